import * as ort from "onnxruntime-node";
import { Codes, VnmcError } from "../diagnostics.js";
import type { Model } from "../ir/model.js";
import { asFloat, compareOutputs, type OutputComparison } from "./compare.js";
import { inputSpecs, randomFeeds, type InputSpec, type TensorCtor } from "./random-inputs.js";

export interface ModelSource {
  label: string;
  /** A path (external data next to it) or the encoded bytes. */
  path?: string;
  bytes?: Uint8Array;
}

export interface VerificationResult {
  inputs: InputSpec[];
  /** Compiled vs pruned-dense: proves the packing (and the fallback function) exact. */
  packing: OutputComparison[];
  /** Compiled vs original: the effect of pruning. */
  pruning: OutputComparison[];
  /** The largest packing error allowed for the outputs' precision. */
  tolerance: number;
  passed: boolean;
}

async function runModel(src: ModelSource, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  let session: ort.InferenceSession;
  try {
    // Errors only: onnxruntime's warnings (e.g. about constant folding) are not the user's concern here.
    const options: ort.InferenceSession.SessionOptions = { logSeverityLevel: 3 };
    session = src.path ? await ort.InferenceSession.create(src.path, options) : await ort.InferenceSession.create(src.bytes!, options);
  } catch (e) {
    throw new VnmcError(Codes.VERIFY_RUNTIME, `onnxruntime could not load the ${src.label} model: ${firstLine(e)}. Use --no-verify to skip verification.`);
  }
  try {
    return await session.run(feeds);
  } catch (e) {
    throw new VnmcError(
      Codes.VERIFY_RUNTIME,
      `onnxruntime could not run the ${src.label} model on generated inputs: ${firstLine(e)}. Give input shapes with --shape name=1x128, or use --no-verify.`,
    );
  } finally {
    await session.release();
  }
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0]!.replace(/\.$/, "");
}

function comparisons(got: Record<string, ort.Tensor>, ref: Record<string, ort.Tensor>): OutputComparison[] {
  const out: OutputComparison[] = [];
  for (const name of Object.keys(ref).sort()) {
    const r = ref[name]!, g = got[name];
    if (!g) continue;
    const rf = asFloat(r.type, r.data), gf = asFloat(g.type, g.data);
    if (!rf || !gf || rf.length !== gf.length) continue;
    out.push(compareOutputs(name, gf, rf, r.dims));
  }
  return out;
}

/**
 * Runs the original, the pruned-dense and the compiled model in onnxruntime-node on the same
 * generated inputs. The compiled model must match the pruned-dense one to float rounding.
 */
export async function verifyModels(
  model: Model,
  shapes: Record<string, number[]>,
  original: ModelSource,
  prunedDense: ModelSource,
  compiled: ModelSource,
): Promise<VerificationResult> {
  const inputs = inputSpecs(model, shapes);
  const feeds = randomFeeds(inputs, ort.Tensor as unknown as TensorCtor);
  const yOriginal = await runModel(original, feeds);
  const yPruned = await runModel(prunedDense, feeds);
  const yCompiled = await runModel(compiled, feeds);
  const packing = comparisons(yCompiled, yPruned);
  const halfPrecision = Object.values(yPruned).some((t) => t.type === "float16" || (t.type as string) === "bfloat16");
  const tolerance = halfPrecision ? 2e-2 : 1e-4;
  return {
    inputs,
    packing,
    pruning: comparisons(yCompiled, yOriginal),
    tolerance,
    passed: packing.every((c) => c.maxRelError <= tolerance),
  };
}
