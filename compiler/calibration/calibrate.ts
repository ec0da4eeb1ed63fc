/**
 * The calibration step of a compile: decides which layers' inputs can be observed, gathers their
 * statistics on the calibration samples, and turns them into the per-weight scoring the prune jobs
 * get. Runs after candidates are found and before weights are rewritten.
 */
import { createHash } from "node:crypto";
import type { Candidate, CompileState } from "../compile-state.js";
import { Codes, type DiagnosticSink } from "../diagnostics.js";
import type { Model } from "../ir/model.js";
import { formatVnm } from "../vnm/config.js";
import { OUTPUT_ERROR_ROWS, type ScoreKind, type WeightScoring } from "../weights/scores.js";
import { recipeKey } from "../weights/weight-recipe.js";
import type { ActivationStats } from "./activation-stats.js";
import { HessianAccumulator } from "./hessian.js";
import { type ActivationRequest, collectActivationStats, requestKey } from "./collect.js";
import type { CalibrationSource } from "./samples.js";

/** What the report says about calibration. */
export interface CalibrationSummary {
  source: "files" | "random";
  description: string;
  /** True for random:N: the statistics come from generated inputs, not data. */
  dataFree: boolean;
  samples: number;
  /** onnxruntime runs of the model (one per sample unless the activations exceed the fetch budget). */
  runs: number;
  /** Layers whose inputs were observed, and those pruned by magnitude because they could not be. */
  observedLayers: number;
  unobservedLayers: string[];
  /** Calibration rows each observed activation kept for layer output errors. */
  rowsPerActivation: number;
  /** SHA-256 of the samples' inputs (names, types, shapes, data), recorded in the output model. */
  digest: string;
  /** Wall time, and CPU time of the whole process meanwhile (onnxruntime's threads included). */
  ms: number;
  cpuMs: number;
  /** --method sparsegpt with sequential calibration: the stages and the extra passes they cost (sequential.ts). */
  sequential?: { target: "pruned" | "dense"; stages: number; passes: number; runs: number; ms: number };
}

/** Bytes all kept calibration rows may take together (rows per activation shrink to fit, to 16). */
export const ROW_BUDGET_BYTES = 256 << 20;
/** Rows kept per activation: as many as a layer output error uses. */
export const MAX_ROWS_PER_ACTIVATION = OUTPUT_ERROR_ROWS;
export const MIN_ROWS_PER_ACTIVATION = 16;

/** The rows each activation keeps, so that all of them fit ROW_BUDGET_BYTES. */
export function rowsPerActivation(channels: number[]): number {
  const total = channels.reduce((a, b) => a + b, 0) * 4;
  if (total === 0) return MAX_ROWS_PER_ACTIVATION;
  return Math.max(MIN_ROWS_PER_ACTIVATION, Math.min(MAX_ROWS_PER_ACTIVATION, Math.floor(ROW_BUDGET_BYTES / total)));
}

/** A source that hashes every sample it hands out (in order) into `hash`. */
function hashing(source: CalibrationSource, hash: ReturnType<typeof createHash>): CalibrationSource {
  return {
    ...source,
    sample(i) {
      const s = source.sample(i);
      for (const x of s.inputs) {
        hash.update(`${x.name}\0${x.dataType}\0${x.dims.join("x")}\0`);
        hash.update(x.data);
      }
      return s;
    },
  };
}

/** The activation to observe for a candidate's input, or undefined when it cannot be observed (a constant, or a value of a subgraph). */
export function observableRequest(c: Candidate, model: Model): ActivationRequest | undefined {
  const a = c.node.inputs[0]!;
  if (a.graph !== model.graph || a.initializer) return undefined;
  return {
    name: a.name, K: c.recipe.inFeatures, channelsFirst: c.gemm?.transA ?? false, elemType: a.type?.elemType ?? c.recipe.dataType,
    origin: a.isGraphInput ? "input" : a.isGraphOutput ? "output" : "internal",
  };
}

/**
 * Per weight (by recipe key) of `candidates`: the scoring its prune job gets from the statistics of
 * every observed input that reads it (a weight shared by two layers sees the tokens of both).
 */
export function scoringFor(
  candidates: Candidate[], requestOf: Map<Candidate, ActivationRequest | undefined>, stats: Map<string, ActivationStats>,
  score: ScoreKind, sparsegpt: CompileState["options"]["sparsegpt"],
): Map<string, WeightScoring> {
  const byWeight = new Map<string, ActivationStats[]>();
  for (const c of candidates) {
    const key = recipeKey(c.recipe, formatVnm(c.config));
    const list = byWeight.get(key) ?? [];
    const r = requestOf.get(c);
    if (r) {
      const st = stats.get(requestKey(r))!;
      if (!list.includes(st)) list.push(st);
    }
    byWeight.set(key, list);
  }
  const scoring = new Map<string, WeightScoring>();
  const matrices = new Map<ActivationStats, Float64Array>(); // one XᵀX per activation, shared by its weights (q, k, v)
  for (const [key, list] of byWeight) {
    if (list.length === 0) continue;
    const s = combine(list, score, OUTPUT_ERROR_ROWS);
    if (sparsegpt) s.sparsegpt = { ...combineHessians(list, matrices), ...sparsegpt };
    scoring.set(key, s);
  }
  return scoring;
}

export async function calibrate(
  modelPath: string, model: Model, state: CompileState, source: CalibrationSource, score: ScoreKind,
  diagnostics: DiagnosticSink, onSample?: (done: number, total: number) => void,
): Promise<CalibrationSummary> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const report = (code: string, message: string, node?: string) =>
    diagnostics.report({ code, severity: "warning", message, pass: "calibrate", ...(node !== undefined ? { node } : {}) });

  // Which candidate inputs can be observed: values of the main graph (a value computed inside an
  // If/Loop body exists only while the body runs and cannot become a model output).
  const requestOf = new Map<Candidate, ActivationRequest | undefined>();
  const unobserved: string[] = [];
  for (const c of state.candidates) {
    const r = observableRequest(c, model);
    requestOf.set(c, r);
    if (r) continue;
    unobserved.push(c.label);
    const why = c.node.inputs[0]!.initializer ? "its input is a constant" : "its input is computed inside a subgraph (If/Loop/Scan body), which cannot be observed";
    report(Codes.CALIB_UNOBSERVED, `'${c.label}' is pruned by magnitude: ${why}.`, c.label);
  }
  const requests = [...requestOf.values()].filter((r): r is ActivationRequest => r !== undefined);
  const distinct = new Map(requests.map((r) => [requestKey(r), r]));
  const rows = rowsPerActivation([...distinct.values()].map((r) => r.K));
  const hash = createHash("sha256");
  const sparsegpt = state.options.sparsegpt;
  const { stats, runs } = await collectActivationStats(modelPath, [...distinct.values()], hashing(source, hash), {
    rowsPerActivation: rows, onSample, hessian: sparsegpt !== undefined,
  });
  const scoring = scoringFor(state.candidates, requestOf, stats, score, sparsegpt);
  state.scoring = scoring;
  return {
    source: source.kind, description: source.description, dataFree: source.dataFree, samples: source.count, runs,
    observedLayers: state.candidates.length - unobserved.length, unobservedLayers: unobserved, rowsPerActivation: rows,
    digest: hash.digest("hex"), ms: performance.now() - t0, cpuMs: cpuMs(process.cpuUsage(cpu0)),
  };
}

const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

/** XᵀX over the union of the activations' tokens (a weight shared by several inputs sees all of them). */
function combineHessians(list: ActivationStats[], matrices: Map<ActivationStats, Float64Array>): { hessian: Float64Array; tokens: number } {
  if (list.length === 1) {
    const st = list[0]!;
    let hessian = matrices.get(st);
    if (!hessian) matrices.set(st, (hessian = st.hessian!.matrix()));
    return { hessian, tokens: st.hessian!.tokens };
  }
  const sum = new HessianAccumulator(list[0]!.K);
  for (const st of list) sum.addFrom(st.hessian!);
  return { hessian: sum.matrix(), tokens: sum.tokens };
}

/** Norms over the union of the activations' tokens, and up to `maxRows` of their rows. */
function combine(list: ActivationStats[], kind: ScoreKind, maxRows: number): WeightScoring {
  const K = list[0]!.K;
  const sumSquares = new Float64Array(K);
  for (const st of list) for (let k = 0; k < K; k++) sumSquares[k] = sumSquares[k]! + st.sumSquares[k]!;
  const norms = Float32Array.from(sumSquares, Math.sqrt);
  const rows = new Float32Array(Math.min(maxRows, list.reduce((n, st) => n + st.rowCount, 0)) * K);
  let at = 0;
  for (const st of list) {
    const take = Math.min(st.rowCount, rows.length / K - at);
    rows.set(st.rows.subarray(0, take * K), at * K);
    at += take;
  }
  return { kind, norms, rows, rowCount: at };
}
