import * as ort from "onnxruntime-node";
import { Codes, VnmcError } from "../diagnostics.js";
import type { Model } from "../ir/model.js";
import type { CalibrationSource } from "../calibration/samples.js";
import { feedsOf } from "../calibration/collect.js";
import { asFloat, classifierOutputs, compareOutputs, OutputAccumulator, type OutputComparison } from "./compare.js";
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
  /** Compiled vs original on the calibration samples, accumulated over all of them. */
  calibration?: CalibrationQuality;
}

export interface CalibrationQuality {
  samples: number;
  /** True when the samples were generated (random:N), not data. */
  dataFree: boolean;
  outputs: OutputComparison[];
}

async function openSession(src: ModelSource): Promise<ort.InferenceSession> {
  try {
    // Errors only: onnxruntime's warnings (e.g. about constant folding) are not the user's concern here.
    const options: ort.InferenceSession.SessionOptions = { logSeverityLevel: 3 };
    return src.path ? await ort.InferenceSession.create(src.path, options) : await ort.InferenceSession.create(src.bytes!, options);
  } catch (e) {
    throw new VnmcError(Codes.VERIFY_RUNTIME, `onnxruntime could not load the ${src.label} model: ${firstLine(e)}. Use --no-verify to skip verification.`);
  }
}

async function runOn(session: ort.InferenceSession, src: ModelSource, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  try {
    return await session.run(feeds);
  } catch (e) {
    throw new VnmcError(
      Codes.VERIFY_RUNTIME,
      `onnxruntime could not run the ${src.label} model on generated inputs: ${firstLine(e)}. Give input shapes with --shape name=1x128, or use --no-verify.`,
    );
  }
}

async function runModel(src: ModelSource, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const session = await openSession(src);
  try {
    return await runOn(session, src, feeds);
  } finally {
    await session.release();
  }
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0]!.replace(/\.$/, "");
}

function comparisons(got: Record<string, ort.Tensor>, ref: Record<string, ort.Tensor>, classLike: Set<string>): OutputComparison[] {
  const out: OutputComparison[] = [];
  for (const name of Object.keys(ref).sort()) {
    const r = ref[name]!, g = got[name];
    if (!g) continue;
    const rf = asFloat(r.type, r.data), gf = asFloat(g.type, g.data);
    if (!rf || !gf || rf.length !== gf.length) continue;
    out.push(compareOutputs(name, gf, rf, r.dims, classLike.has(name)));
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
  calibration?: CalibrationSource,
): Promise<VerificationResult> {
  const inputs = inputSpecs(model, shapes);
  const feeds = randomFeeds(inputs, ort.Tensor as unknown as TensorCtor);
  const yPruned = await runModel(prunedDense, feeds);
  // The original and the compiled model stay loaded for the calibration samples (loading a large
  // model costs more than running it on a few samples).
  const a = await openSession(original);
  try {
    const b = await openSession(compiled);
    try {
      const yOriginal = await runOn(a, original, feeds);
      const yCompiled = await runOn(b, compiled, feeds);
      const classLike = classifierOutputs(model);
      const packing = comparisons(yCompiled, yPruned, classLike);
      const halfPrecision = Object.values(yPruned).some((t) => t.type === "float16" || (t.type as string) === "bfloat16");
      const tolerance = halfPrecision ? 2e-2 : 1e-4;
      const result: VerificationResult = {
        inputs,
        packing,
        pruning: comparisons(yCompiled, yOriginal, classLike),
        tolerance,
        passed: packing.every((c) => c.maxRelError <= tolerance),
      };
      if (calibration) result.calibration = await compareSessions(a, b, calibration, classLike);
      return result;
    } finally {
      await b.release();
    }
  } finally {
    await a.release();
  }
}

/**
 * Runs the original and the compiled model on every calibration sample, one at a time, and compares
 * their float outputs (accumulated over the samples, nothing kept).
 */
export async function compareOnSamples(original: ModelSource, compiled: ModelSource, source: CalibrationSource, classLike: Set<string>): Promise<CalibrationQuality> {
  const a = await openSession(original);
  try {
    const b = await openSession(compiled);
    try {
      return await compareSessions(a, b, source, classLike);
    } finally {
      await b.release();
    }
  } finally {
    await a.release();
  }
}

async function compareSessions(a: ort.InferenceSession, b: ort.InferenceSession, source: CalibrationSource, classLike: Set<string>): Promise<CalibrationQuality> {
  const acc = new Map<string, OutputAccumulator>();
  for (let s = 0; s < source.count; s++) {
    const sample = source.sample(s);
    const feeds = feedsOf(sample.inputs);
    let ref, got;
    try {
      ref = await a.run(feeds);
      got = await b.run(feeds);
    } catch (e) {
      throw new VnmcError(Codes.VERIFY_RUNTIME, `onnxruntime could not run the models on calibration sample '${sample.label}': ${firstLine(e)}. Use --no-verify to skip verification.`);
    }
    for (const name of Object.keys(ref).sort()) {
      const r = ref[name]!, g = got[name];
      if (!g) continue;
      const rf = asFloat(r.type, r.data), gf = asFloat(g.type, g.data);
      if (!rf || !gf || rf.length !== gf.length) continue;
      let x = acc.get(name);
      if (!x) acc.set(name, (x = new OutputAccumulator(name, classLike.has(name))));
      x.add(gf, rf, r.dims);
    }
  }
  return { samples: source.count, dataFree: source.dataFree, outputs: [...acc.values()].map((x) => x.result()) };
}
