import { floatAttr, intAttr, intsAttr, tensorAttr } from "../../compiler/ir/attribute.js";
import { DataType } from "../../compiler/ir/dtype.js";
import { Graph, NameScope } from "../../compiler/ir/graph.js";
import { Model } from "../../compiler/ir/model.js";
import { InMemoryTensor, tensorFromTyped } from "../../compiler/ir/tensor.js";
import type { Value } from "../../compiler/ir/value.js";
import { fromFloat32 } from "../../compiler/weights/float-view.js";
import { Rng } from "../../models/random.js";

/** Small hand-made graphs covering the ways exporters write weights. Weight values are seeded normals. */
export class TinyModel {
  readonly graph = new Graph("tiny", new NameScope());
  readonly rng: Rng;
  constructor(seed = 7, readonly dtype: number = DataType.FLOAT) {
    this.rng = new Rng(seed);
  }
  input(name: string, shape: Array<number | string>, dtype = this.dtype): Value {
    const v = this.graph.createValue(name, { elemType: dtype, shape });
    this.graph.inputs.push(v);
    return v;
  }
  output(v: Value, shape?: Array<number | string>): void {
    v.type = { elemType: this.dtype, shape };
    this.graph.outputs.push(v);
  }
  random(n: number): Float32Array {
    return Float32Array.from({ length: n }, () => this.rng.normal());
  }
  /** An initializer of normal values with the given dims (float32 data converted to `dtype`). */
  init(name: string, dims: number[], dtype = this.dtype): Value {
    const n = dims.reduce((a, b) => a * b, 1);
    const values = this.random(n);
    const bytes = dtype === DataType.DOUBLE ? new Uint8Array(Float64Array.from(values).buffer) : fromFloat32(values, dtype).slice();
    return this.graph.addInitializer(name, new InMemoryTensor(dtype, dims, bytes));
  }
  constantNode(name: string, dims: number[]): Value {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = tensorFromTyped(DataType.FLOAT, dims, this.random(n));
    const out = this.graph.createValue(name);
    this.graph.addNode({ opType: "Constant", inputs: [], outputs: [out], attributes: [tensorAttr("value", data)], name: `${name}_const` });
    return out;
  }
  op(opType: string, inputs: (Value | null)[], name: string, attrs = [] as ReturnType<typeof intAttr>[], graph = this.graph): Value {
    const out = graph.freshValue(`${name}_out`);
    graph.addNode({ opType, inputs, outputs: [out], attributes: attrs, name });
    return out;
  }
  model(opset = 18): Model {
    const m = new Model(this.graph);
    m.irVersion = 10;
    m.opsetImports = [{ domain: "", version: opset }];
    return m;
  }
}

export { floatAttr, intAttr, intsAttr };
