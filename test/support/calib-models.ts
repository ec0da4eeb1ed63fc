import { create, toBinary } from "@bufbuild/protobuf";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { TensorProtoSchema } from "onnx-buf";
import { DataType } from "../../compiler/ir/dtype.js";
import type { Model } from "../../compiler/ir/model.js";
import { TinyModel } from "./tiny-models.js";

export const IN = 16, HIDDEN = 32, OUT = 8;

/** x [batch, 16] ⊙ mask [batch, 16] → MatMul 'fc1' [16→32] → Relu → MatMul 'fc2' [32→8]: two inputs. */
export function twoInputModel(seed = 3): Model {
  const t = new TinyModel(seed);
  const x = t.input("x", ["batch", IN]);
  const mask = t.input("mask", ["batch", IN]);
  const h = t.op("Relu", [t.op("MatMul", [t.op("Mul", [x, mask], "gate"), t.init("W1", [IN, HIDDEN])], "fc1")], "relu");
  t.output(t.op("MatMul", [h, t.init("W2", [HIDDEN, OUT])], "fc2"), ["batch", OUT]);
  return t.model();
}

/** x [batch, 16] → MatMul 'fc1' → Relu → MatMul 'fc2': one input. */
export function oneInputModel(seed = 4): Model {
  const t = new TinyModel(seed);
  const x = t.input("x", ["batch", IN]);
  const h = t.op("Relu", [t.op("MatMul", [x, t.init("W1", [IN, HIDDEN])], "fc1")], "relu");
  t.output(t.op("MatMul", [h, t.init("W2", [HIDDEN, OUT])], "fc2"), ["batch", OUT]);
  return t.model();
}

/** A TensorProto file of float32 (or int64) values. */
export function writePb(path: string, name: string, dims: number[], values: Float32Array | BigInt64Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const dataType = values instanceof Float32Array ? DataType.FLOAT : DataType.INT64;
  writeFileSync(path, toBinary(TensorProtoSchema, create(TensorProtoSchema, {
    name, dataType, dims: dims.map(BigInt), rawData: new Uint8Array(values.buffer as ArrayBuffer, values.byteOffset, values.byteLength),
  })));
}

/** Seeded normal float32 values. */
export function normals(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next()));
}
