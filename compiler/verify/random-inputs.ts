import type { Tensor as OrtTensor } from "onnxruntime-common";
import { Codes, VnmcError } from "../diagnostics.js";
import { DataType, dataTypeName } from "../ir/dtype.js";
import type { Model } from "../ir/model.js";
import { encodeF16 } from "../numeric/half.js";

/** Default size of a symbolic dimension when the user gave no --shape. */
export const DEFAULT_DYNAMIC_DIM = 4;

export interface InputSpec {
  name: string;
  dataType: number;
  dims: number[];
}

/** Concrete input shapes: fixed dims as declared, dynamic dims from `shapes` or a small default. */
export function inputSpecs(model: Model, shapes: Record<string, number[]>): InputSpec[] {
  const known = new Set(model.graph.inputs.map((v) => v.name));
  for (const name of Object.keys(shapes)) {
    if (!known.has(name)) {
      throw new VnmcError(Codes.BAD_SHAPE_OPTION, `--shape names '${name}', which is not an input of the model (inputs: ${[...known].join(", ")}).`, "usage");
    }
  }
  return model.graph.inputs
    .filter((v) => !v.initializer)
    .map((v) => {
      const declared = v.type?.shape;
      const given = shapes[v.name];
      if (given && declared && given.length !== declared.length) {
        throw new VnmcError(Codes.BAD_SHAPE_OPTION, `--shape ${v.name}=${given.join("x")} has rank ${given.length}, but the input has rank ${declared.length}.`, "usage");
      }
      const dims = given ?? (declared ?? []).map((d) => (typeof d === "number" ? d : DEFAULT_DYNAMIC_DIM));
      return { name: v.name, dataType: v.type?.elemType ?? DataType.FLOAT, dims };
    });
}

/** A small seeded generator so verification is reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type TensorCtor = new (type: string, data: unknown, dims: readonly number[]) => OrtTensor;

/** Random feeds for the given specs: normal floats, small non-negative integers (safe as indices). */
export function randomFeeds(specs: InputSpec[], Tensor: TensorCtor, seed = 1234): Record<string, OrtTensor> {
  const next = rng(seed);
  const normal = () => Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
  const feeds: Record<string, OrtTensor> = {};
  for (const s of specs) {
    const n = s.dims.reduce((a, b) => a * b, 1);
    switch (s.dataType) {
      case DataType.FLOAT: feeds[s.name] = new Tensor("float32", Float32Array.from({ length: n }, normal), s.dims); break;
      case DataType.FLOAT16: feeds[s.name] = new Tensor("float16", encodeF16(Float32Array.from({ length: n }, normal)), s.dims); break;
      case DataType.DOUBLE: feeds[s.name] = new Tensor("float64", Float64Array.from({ length: n }, normal), s.dims); break;
      case DataType.INT64: feeds[s.name] = new Tensor("int64", BigInt64Array.from({ length: n }, () => BigInt(Math.floor(next() * 8))), s.dims); break;
      case DataType.INT32: feeds[s.name] = new Tensor("int32", Int32Array.from({ length: n }, () => Math.floor(next() * 8)), s.dims); break;
      case DataType.BOOL: feeds[s.name] = new Tensor("bool", Uint8Array.from({ length: n }, () => (next() < 0.5 ? 1 : 0)), s.dims); break;
      default:
        throw new VnmcError(Codes.VERIFY_RUNTIME, `Cannot generate verification inputs of type ${dataTypeName(s.dataType)} for '${s.name}'; use --no-verify.`);
    }
  }
  return feeds;
}
