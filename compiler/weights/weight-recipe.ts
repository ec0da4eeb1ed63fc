import { ExternalFileTensor, type TensorData } from "../ir/tensor.js";
import type { Scratch } from "./scratch.js";
import { elementSize, fromFloat32, toFloat32, transposeBytes } from "./float-view.js";

/**
 * How a node's logical weight W [out, in] is obtained from a constant in the file: possibly transposed
 * (MatMul's B is [in, out]), cast (a `Cast` of a constant, as exporters write fp16 weights), and scaled
 * (Gemm's alpha). Two nodes with the same recipe share one pruned, packed weight.
 */
export interface WeightRecipe {
  /** The constant as stored (initializer or Constant node value). */
  base: TensorData;
  /** Name of the constant, for messages and generated names. */
  baseName: string;
  /** True when the constant is [in, out] and must be transposed to W [out, in]. */
  transposed: boolean;
  /** Element type of W after any Cast. */
  dataType: number;
  /** Multiplier folded into W (Gemm alpha); 1 keeps the exact original values. */
  scale: number;
  outFeatures: number;
  inFeatures: number;
}

export function recipeKey(r: WeightRecipe, config: string): string {
  return JSON.stringify([r.baseName, r.transposed, r.dataType, r.scale, config]);
}

/** W [out, in] as raw bytes of `dataType`, row-major. With `scratch`, the result may live in it. */
export function materializeWeight(r: WeightRecipe, scratch?: Scratch): Uint8Array {
  const bytes = storedWeight(r, scratch);
  return r.transposed ? transposeBytes(bytes, r.inFeatures, r.outFeatures, elementSize(r.dataType), scratch?.bytes("transposed", bytes.byteLength)) : bytes;
}

/**
 * The weight converted to `dataType` and scaled, but in its stored orientation ([in, out] when
 * `transposed`): the pruner reads it transposed on the fly instead of transposing it first.
 */
export function storedWeight(r: WeightRecipe, scratch?: Scratch): Uint8Array {
  let bytes = scratch && r.base instanceof ExternalFileTensor ? r.base.readInto(scratch.bytes("read", r.base.byteLength)) : r.base.read();
  if (r.base.dataType !== r.dataType || r.scale !== 1) {
    const f = toFloat32(bytes, r.base.dataType);
    const scaled = r.scale === 1 ? f : f.map((x) => x * r.scale);
    bytes = fromFloat32(scaled, r.dataType);
  }
  return bytes;
}
