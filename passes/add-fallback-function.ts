import type { CompileState } from "../compiler/compile-state.js";
import { Codes, VnmcError } from "../compiler/diagnostics.js";
import { type Attribute, intAttr, refAttr, stringAttr, tensorAttr } from "../compiler/ir/attribute.js";
import { DataType } from "../compiler/ir/dtype.js";
import { Graph, NameScope } from "../compiler/ir/graph.js";
import type { FunctionDef, Model } from "../compiler/ir/model.js";
import { tensorFromTyped } from "../compiler/ir/tensor.js";
import type { Value } from "../compiler/ir/value.js";
import type { Pass, PassContext } from "../compiler/pass/pass.js";
import { VNM_DOMAIN, VNM_OP } from "./rewrite-to-vnm.js";

/** The oldest ai.onnx opset the function body can be written in (Unsqueeze/Squeeze take axes as inputs). */
export const MIN_FALLBACK_OPSET = 13;
const INT_ATTR = 2; // AttributeProto.INT

/**
 * Adds the com.vnmc opset import and the model-local function `com.vnmc::VNMSparseGemm`, whose body
 * rebuilds the dense weight from the packed inputs with standard operators and multiplies. Every
 * onnxruntime can run a compiled model through it; since the packed inputs are constants, the rebuild
 * folds away when the session is created.
 */
export class AddFallbackFunction implements Pass<CompileState> {
  readonly name = "add-fallback-function";

  run(model: Model, _ctx: PassContext<CompileState>): { modified: boolean } {
    const types = new Set<number>();
    for (const g of model.graph.allGraphs()) {
      for (const n of g.nodes) if (n.domain === VNM_DOMAIN && n.opType === VNM_OP) types.add(n.inputs[0]?.type?.elemType ?? n.inputs[1]!.initializer!.dataType);
    }
    if (types.size === 0) return { modified: false };
    if (model.opsetVersion(VNM_DOMAIN) === undefined) model.setOpset(VNM_DOMAIN, 1);
    const opset = model.opsetVersion("") ?? MIN_FALLBACK_OPSET;
    if (opset < 15 && types.size > 1) {
      throw new VnmcError(
        Codes.OPSET_TOO_OLD,
        `The model mixes activation types in rewritten layers at opset ${opset}; the fallback function needs opset 15 (CastLike) for that; convert the model to opset 15 or newer.`,
      );
    }
    if (!model.functions.some((f) => f.domain === VNM_DOMAIN && f.name === VNM_OP)) model.functions.push(buildFallbackFunction(opset, types.size === 1 ? [...types][0] : MIXED));
    return { modified: true };
  }
}

/** Small builder for function bodies: one node per call, fresh output names. */
class BodyBuilder {
  constructor(readonly g: Graph) {}
  op(opType: string, inputs: (Value | null)[], attributes: Attribute[] = [], hint = opType): Value {
    const out = this.g.freshValue(hint);
    this.g.addNode({ opType, inputs, outputs: [out], attributes });
    return out;
  }
  ints(values: number[], hint = "c"): Value {
    const data = tensorFromTyped(DataType.INT64, [values.length], BigInt64Array.from(values.map(BigInt)));
    return this.op("Constant", [], [tensorAttr("value", data)], hint);
  }
  floats(values: number[], hint = "f"): Value {
    const data = tensorFromTyped(DataType.FLOAT, [values.length], Float32Array.from(values));
    return this.op("Constant", [], [tensorAttr("value", data)], hint);
  }
  /** A 1-element int64 tensor from an int attribute of the function. */
  attrInt(name: string): Value {
    const scalar = this.op("Constant", [], [refAttr("value_int", name, INT_ATTR)], name);
    return this.op("Reshape", [scalar, this.ints([1], "one_dim")], [], `${name}_1d`);
  }
}

/** activationType for models whose rewritten layers differ in activation type (needs opset 15). */
export const MIXED = -1;

/** The function body, written against the model's own ai.onnx opset (onnxruntime inlines it with that). */
export function buildFallbackFunction(opset: number, activationType: number = DataType.FLOAT): FunctionDef {
  const g = new Graph(VNM_OP, new NameScope());
  const [A, values, columns, meta, bias, rowIndex] = ["A", "values", "columns", "meta", "bias", "row_index"].map((n) => g.createValue(n)) as [
    Value, Value, Value, Value, Value, Value,
  ];
  g.inputs.push(A, values, columns, meta, bias, rowIndex);
  const b = new BodyBuilder(g);
  const K = b.attrInt("in_features");
  const N = b.attrInt("out_features");
  const V = b.attrInt("v");
  const zero1 = b.ints([0], "zero");
  const one1 = b.ints([1], "one");
  const two1 = b.ints([2], "two");
  const four1 = b.ints([4], "four");
  const minus1 = b.ints([-1], "minus_one");
  const scalar = (v: Value) => b.op("Squeeze", [v, zero1], [], "scalar");
  const range = (n: Value) => b.op("Range", [scalar(zero1), scalar(n), scalar(one1)], [], "range");
  const axis0 = [intAttr("axis", 0)];

  // onnxruntime folds this rebuild when the session is created, and folding costs ~10 ns per byte of
  // every intermediate, so the body is laid out to keep large intermediates few: everything is put in
  // output-row order while it is still small, and the dense weight is made by one scatter.

  // Sizes: values is [R, 2G], columns [R/V, G, 4].
  const vShape = b.op("Shape", [values], [], "values_shape");
  const R = b.op("Gather", [vShape, zero1], [], "R");
  const twoG = b.op("Gather", [vShape, one1], [], "two_G");
  const G = b.op("Div", [twoG, two1], [], "G");

  // Output channel o takes the packed row r with row_index[r] = o; padding rows (-1) go to a spare slot N.
  const ri = b.op("Cast", [rowIndex], [intAttr("to", DataType.INT64)], "row_index_i64");
  const targetRow = b.op("Where", [b.op("Less", [ri, b.ints([0])], [], "is_padding"), N, ri], [], "target_row");
  const inverse0 = b.op("ConstantOfShape", [b.op("Add", [N, one1])], [tensorAttr("value", tensorFromTyped(DataType.INT64, [1], new BigInt64Array([0n])))], "inverse0");
  const inverse = b.op("ScatterElements", [inverse0, targetRow, range(R)], axis0, "inverse_full");
  const source = b.op("Slice", [inverse, zero1, N, zero1], [], "source_row");

  // Per output row: its meta bytes and the offset of its block in the flattened columns.
  // Index arithmetic in int32 from here: half the bytes to fold of int64.
  const i32 = (v: Value, hint: string) => b.op("Cast", [v], [intAttr("to", DataType.INT32)], hint);
  const metaN = i32(b.op("Gather", [meta, source], axis0, "meta_rows"), "meta_i32");
  const blockBase = i32(b.op("Mul", [b.op("Div", [source, V], [], "block"), b.op("Mul", [G, four1], [], "block_stride")], [], "block_base64"), "block_base");
  // A meta byte holds two nibbles (low = even group); each nibble is p0 | p1 << 2. One table lookup
  // gives the 4 positions (p0, p1 of the even group, p0, p1 of the odd group) of a byte.
  const table = new Int32Array(256 * 4);
  for (let byte = 0; byte < 256; byte++) {
    const lo = byte & 15, hi = byte >> 4;
    table.set([lo & 3, lo >> 2, hi & 3, hi >> 2], byte * 4);
  }
  const positions = b.op("Gather", [b.op("Constant", [], [tensorAttr("value", tensorFromTyped(DataType.INT32, [256, 4], table))], "meta_table"), metaN], axis0, "positions4");
  const pos = b.op("Slice", [b.op("Reshape", [positions, b.op("Concat", [N, minus1], axis0)], [], "positions_flat"), zero1, twoG, one1], [], "positions");
  // Value j of a row belongs to group j / 2: flat index into columns = block_base + (j / 2) * 4 + position.
  const groupBase = i32(b.op("Mul", [b.op("Div", [range(twoG), two1], [], "group"), four1], [], "group_base64"), "group_base");
  const flatIndex = b.op("Add", [b.op("Add", [b.op("Unsqueeze", [blockBase, one1], [], "block_base_col"), groupBase], [], "slot_base"), pos], [], "column_slot");
  const absCol = b.op("Gather", [b.op("Reshape", [columns, minus1], [], "columns_flat"), flatIndex], axis0, "abs_col");
  const valuesF = b.op("Cast", [b.op("Gather", [values, source], axis0, "values_rows")], [intAttr("to", DataType.FLOAT)], "values_f32");

  // The dense weight [N, K] in float32 (onnxruntime's CPU kernels lack float16 for scatter with
  // reduction). Since opset 16 duplicate indices add up, as the contract says; before it, zero values
  // (padding) go to a spare column K so a repeated index can never overwrite a weight.
  let rebuilt: Value;
  if (opset >= 16) {
    const zeros = b.op("ConstantOfShape", [b.op("Concat", [N, K], axis0)], [], "zeros");
    rebuilt = b.op("ScatterElements", [zeros, absCol, valuesF], [intAttr("axis", 1), stringAttr("reduction", "add")], "W_f32");
  } else {
    const target = b.op("Where", [b.op("Equal", [valuesF, b.floats([0])], [], "is_zero"), i32(K, "K_i32"), absCol], [], "scatter_index");
    const zeros = b.op("ConstantOfShape", [b.op("Concat", [N, b.op("Add", [K, one1])], axis0)], [], "zeros");
    const scattered = b.op("ScatterElements", [zeros, target, valuesF], [intAttr("axis", 1)], "scattered");
    rebuilt = b.op("Slice", [scattered, zero1, K, one1], [], "W_f32");
  }
  // Back to the activations' type. A Cast to the one type all nodes use (onnxruntime drops a float→float
  // Cast); CastLike only when layers differ in type.
  const W = activationType === MIXED ? b.op("CastLike", [rebuilt, A], [], "W") : b.op("Cast", [rebuilt], [intAttr("to", activationType)], "W");

  // Y = A · Wᵀ + bias over any leading batch dims (Gemm takes the optional bias as C).
  const A2 = b.op("Reshape", [A, b.op("Concat", [minus1, K], [intAttr("axis", 0)])], [], "A_2d");
  const Y2 = b.op("Gemm", [A2, W, bias], [intAttr("transB", 1)], "Y_2d");
  const batch = b.op("Slice", [b.op("Shape", [A], [], "A_shape"), zero1, minus1, zero1], [], "batch_dims");
  const Y = b.op("Reshape", [Y2, b.op("Concat", [batch, N], [intAttr("axis", 0)])], [], "Y");
  g.outputs.push(Y);

  return {
    domain: VNM_DOMAIN,
    name: VNM_OP,
    overload: "",
    attributeNames: ["in_features", "out_features", "v", "m", "n"],
    attributeProtos: [],
    opsetImports: [{ domain: "", version: opset }],
    body: g,
    extras: undefined,
  };
}
