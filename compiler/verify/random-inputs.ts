import type { Tensor as OrtTensor } from "onnxruntime-common";
import { Codes, VnmcError } from "../diagnostics.js";
import { DataType, dataTypeName } from "../ir/dtype.js";
import type { Model } from "../ir/model.js";
import { encodeF16 } from "../numeric/half.js";
import { mulberry32 } from "../seeded.js";

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


export type TensorCtor = new (type: string, data: unknown, dims: readonly number[]) => OrtTensor;

/** Typed data of one generated input, as onnxruntime takes it. */
export interface GeneratedInput {
  spec: InputSpec;
  /** onnxruntime's name of the element type ("float32", "int64", ...). */
  type: string;
  data: Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;
}

/** Random data for the given specs: normal floats, small non-negative integers (safe as indices). */
export function randomInputs(specs: InputSpec[], seed = 1234): GeneratedInput[] {
  const next = mulberry32(seed);  // seeded: verification is reproducible
  const normal = () => Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
  return specs.map((s) => {
    const n = s.dims.reduce((a, b) => a * b, 1);
    switch (s.dataType) {
      case DataType.FLOAT: return { spec: s, type: "float32", data: Float32Array.from({ length: n }, normal) };
      case DataType.FLOAT16: return { spec: s, type: "float16", data: encodeF16(Float32Array.from({ length: n }, normal)) };
      case DataType.DOUBLE: return { spec: s, type: "float64", data: Float64Array.from({ length: n }, normal) };
      case DataType.INT64: return { spec: s, type: "int64", data: BigInt64Array.from({ length: n }, () => BigInt(Math.floor(next() * 8))) };
      case DataType.INT32: return { spec: s, type: "int32", data: Int32Array.from({ length: n }, () => Math.floor(next() * 8)) };
      case DataType.BOOL: return { spec: s, type: "bool", data: Uint8Array.from({ length: n }, () => (next() < 0.5 ? 1 : 0)) };
      default:
        throw new VnmcError(Codes.VERIFY_RUNTIME, `Cannot generate inputs of type ${dataTypeName(s.dataType)} for '${s.name}'; use --no-verify (and real calibration data).`);
    }
  });
}

/** Random feeds for the given specs (see randomInputs). */
export function randomFeeds(specs: InputSpec[], Tensor: TensorCtor, seed = 1234): Record<string, OrtTensor> {
  const feeds: Record<string, OrtTensor> = {};
  for (const g of randomInputs(specs, seed)) feeds[g.spec.name] = new Tensor(g.type, g.data, g.spec.dims);
  return feeds;
}
