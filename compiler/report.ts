import type { CalibrationSummary } from "./calibration/calibrate.js";
import type { CompileState } from "./compile-state.js";
import type { Diagnostic } from "./diagnostics.js";
import type { PassTiming } from "./pass/manager.js";
import type { OutputComparison } from "./verify/compare.js";
import type { VerificationResult } from "./verify/verify.js";
import { VERSION } from "./version.js";
import { type ChoiceReport, choiceReport, renderChoice } from "./vnm/choice-report.js";
import type { ChoiceSummary } from "./vnm/choose-step.js";
import type { LayerChoice } from "./vnm/choose-vnm.js";
import { type VnmConfig, formatVnm } from "./vnm/config.js";
import type { ScoreKind } from "./weights/scores.js";
import { recipeKey } from "./weights/weight-recipe.js";

export interface LayerRow {
  node: string;
  op: string;
  /** [out_features, in_features] */
  weightShape: number[] | null;
  vnm: string | null;
  sparsity: number | null;
  /** Σ|W| kept / Σ|W|. */
  keptMagnitude: number | null;
  /** The score the layer's mask maximised (magnitude where no activation statistics exist). */
  score?: ScoreKind;
  /** Σ score kept / Σ score, for that score. */
  keptScore?: number | null;
  /**
   * ‖X·Wᵀ − X·(W⊙mask)ᵀ‖ / ‖X·Wᵀ‖ on `outputErrorRows` calibration rows (a uniform sample of the
   * tokens) and `outputErrorChannels` evenly spaced output channels (all but on large layers).
   */
  outputError?: number;
  outputErrorRows?: number;
  outputErrorChannels?: number;
  /** Time the prune job of the layer's weight took (scoring, selection, packing, output error). */
  pruneMs?: number;
  /** "already sparse": the weight had the V:N:M pattern and was packed exactly, nothing pruned. */
  status: "sparse" | "already sparse" | "dense";
  /** Reason code when left dense. */
  code?: string;
  reason?: string;
  /** Name of the weight; nodes sharing one weight share its packed form. */
  weight?: string;
  sharedWith?: string[];
  /** --permute: the channel permutation of the layer's weight. */
  permutation?: LayerPermutation;
  /**
   * Pruned by --method sparsegpt: the mask was chosen by the saliency `maskScore` (no `score` then) and
   * the KEPT WEIGHTS WERE UPDATED with the inverse Hessian, so they differ from the original weights;
   * `outputError` is measured with the updated weights. `deadChannels`: inputs never active in the
   * calibration data; `lambda`: the damping added to XᵀX's diagonal; `refit`: once the mask was fixed,
   * the kept weights were refitted exactly by least squares (`swaps`: moves of its local search).
   */
  sparsegpt?: { maskScore: string; deadChannels: number; lambda: number; refit?: { swaps: number } };
  /** --sparsity / --speedup: why this layer got its V:N:M (predicted speedup, error, runner-up). */
  choice?: LayerChoice;
}

export interface LayerPermutation {
  /** Kept score with the permutation / without, minus 1 (the search's gain; 0 when none was found). */
  keptScoreGain: number;
  /** Where the input permutation went: the absolute `columns`, or the producers' row order. */
  input: "columns" | "folded";
  /** The producers the input permutation was folded into. */
  foldedInto?: string[];
  /** The consumer whose input order this layer's rows write (its row_index). */
  rowsCarry?: string;
  /** The identity was packed instead: it gave the lower output error on the calibration rows. */
  dropped?: boolean;
  /** What ended the search: converged, work (the budget), time (the wall-clock cap), already sparse. */
  stoppedBy: string;
  searchMs: number;
}

export interface CompileReport {
  vnmcVersion: string;
  input: string;
  output: string;
  vnm: string;
  /** The score asked for. */
  score: ScoreKind;
  /**
   * "select": kept weights are the original ones at the mask; "sparsegpt": observed layers were pruned
   * by SparseGPT and their kept weights updated (see LayerRow.sparsegpt).
   */
  method: "select" | "sparsegpt";
  /** Present when compiled with --calib. */
  calibration?: CalibrationSummary;
  /** Present when V:N:M was chosen from --sparsity / --speedup ("vnm" is then the choice, or "per-layer"). */
  choice?: ChoiceReport;
  layers: LayerRow[];
  totals: {
    rewritten: number;
    leftDense: number;
    parametersBefore: number;
    parametersAfter: number;
    bytesBefore: number;
    bytesAfter: number;
    compileMs: number;
  };
  timings: PassTiming[];
  verification?: VerificationResult;
  diagnostics: Diagnostic[];
}

export interface ReportInput {
  input: string;
  output: string;
  vnm: VnmConfig;
  state: CompileState;
  diagnostics: Diagnostic[];
  paramsBefore: number;
  paramsAfter: number;
  bytesBefore: number;
  bytesAfter: number;
  timings: PassTiming[];
  totalMs: number;
  verification?: VerificationResult;
  calibration?: CalibrationSummary;
  score: ScoreKind;
  choice?: ChoiceSummary;
}


export function buildReport(r: ReportInput): CompileReport {
  const byWeight = new Map<unknown, string[]>();
  for (const c of r.state.candidates) byWeight.set(c.sparse, [...(byWeight.get(c.sparse) ?? []), c.label]);
  const layers: LayerRow[] = r.state.candidates.map((c) => {
    const stats = c.sparse?.stats;
    const shared = (byWeight.get(c.sparse) ?? []).filter((l) => l !== c.label);
    const row: LayerRow = {
      node: c.label, op: c.node.opType, weightShape: [c.recipe.outFeatures, c.recipe.inFeatures], vnm: formatVnm(c.config),
      sparsity: stats ? 1 - stats.nonzerosAfter / (c.recipe.outFeatures * c.recipe.inFeatures) : 1 - 2 / c.config.m,
      keptMagnitude: stats?.keptMagnitude ?? null, score: stats?.score ?? c.sparse?.scoring?.kind ?? "magnitude", keptScore: stats?.keptScore ?? null,
      status: stats?.alreadySparse ? "already sparse" : "sparse", weight: c.recipe.baseName,
    };
    if (stats) row.pruneMs = Math.round(stats.ms * 10) / 10;
    if (stats?.outputError) {
      row.outputError = stats.outputError.relError;
      row.outputErrorRows = stats.outputError.rows;
      row.outputErrorChannels = stats.outputError.channels;
    }
    if (shared.length) row.sharedWith = shared;
    if (stats?.sparsegpt) {
      row.sparsegpt = { ...stats.sparsegpt };
      delete row.score;
      row.keptScore = null;
    }
    const chosen = r.choice?.layers[c.label];
    if (chosen) row.choice = chosen;
    const perm = r.state.permutations?.get(recipeKey(c.recipe, formatVnm(c.config)));
    if (perm) {
      row.permutation = {
        keptScoreGain: perm.keptBefore && perm.keptAfter ? perm.keptAfter / perm.keptBefore - 1 : 0,
        input: perm.inputFolded ? "folded" : "columns", stoppedBy: perm.stoppedBy, searchMs: Math.round(perm.ms),
      };
      if (perm.foldedInto) row.permutation.foldedInto = perm.foldedInto;
      if (perm.carriesFoldOf) row.permutation.rowsCarry = perm.carriesFoldOf;
      if (stats?.permutationDropped) row.permutation.dropped = true;
    }
    return row;
  });
  for (const s of r.state.skipped) {
    layers.push({
      node: s.label, op: s.opType, weightShape: s.weightShape ?? null, vnm: null, sparsity: null, keptMagnitude: null,
      status: "dense", code: s.code, reason: s.reason,
    });
  }
  return {
    vnmcVersion: VERSION,
    input: r.input,
    output: r.output,
    vnm: r.choice?.perLayer ? "per-layer" : formatVnm(r.vnm),
    ...(r.choice ? { choice: choiceReport(r.choice) } : {}),
    score: r.score,
    method: r.state.options.sparsegpt ? "sparsegpt" : "select",
    ...(r.calibration ? { calibration: { ...r.calibration, ms: Math.round(r.calibration.ms), cpuMs: Math.round(r.calibration.cpuMs) } } : {}),
    layers,
    totals: {
      rewritten: r.state.candidates.length,
      leftDense: r.state.skipped.length,
      parametersBefore: r.paramsBefore,
      parametersAfter: r.paramsAfter,
      bytesBefore: r.bytesBefore,
      bytesAfter: r.bytesAfter,
      compileMs: Math.round(r.totalMs),
    },
    timings: r.timings.map((t) => ({ ...t, ms: Math.round(t.ms * 10) / 10 })),
    verification: r.verification,
    diagnostics: r.diagnostics,
  };
}

const pct = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(1)}%`);

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** Columns named here are numbers, right-aligned. */
const NUMERIC = new Set(["V:N:M", "sparsity", "kept |W|", "kept score", "out err", "perm gain"]);

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (NUMERIC.has(headers[i]!) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function statusText(l: LayerRow): string {
  if (l.status === "dense") return `dense: ${l.reason} [${l.code}]`;
  const shared = l.sharedWith ? ` (shares weight with ${l.sharedWith.join(", ")})` : "";
  const p = l.permutation;
  const notes: string[] = [];
  if (p?.foldedInto) notes.push(`input order folded into ${p.foldedInto.join(", ")}`);
  if (p?.rowsCarry) notes.push(`rows ordered for ${p.rowsCarry}`);
  if (p?.dropped) notes.push("unpermuted: lower output error than the permutation found");
  return `${l.status}${shared}${notes.length ? `; ${notes.join("; ")}` : ""}`;
}

/** The human-readable report: a per-layer table, totals and verification. */
export function renderReport(rep: CompileReport): string {
  const scored = rep.score !== "magnitude" || rep.layers.some((l) => (l.score !== undefined && l.score !== "magnitude") || l.sparsegpt);
  const calibrated = rep.calibration !== undefined;
  const headers = ["node", "weight", "V:N:M", "sparsity", "kept |W|"];
  if (scored) headers.push("score", "kept score");
  if (calibrated) headers.push("out err");
  const permuted = rep.layers.some((l) => l.permutation);
  if (permuted) headers.push("perm gain");
  headers.push("status");
  const rows = rep.layers.map((l) => {
    const cells = [l.node, l.weightShape ? l.weightShape.join("x") : "-", l.vnm ?? "-", pct(l.sparsity), pct(l.keptMagnitude)];
    if (scored) cells.push(l.status === "dense" ? "-" : l.sparsegpt ? "sparsegpt" : (l.score ?? "-"), pct(l.keptScore ?? null));
    if (calibrated) cells.push(l.outputError === undefined ? "-" : pct(l.outputError));
    if (permuted) cells.push(l.permutation && !l.permutation.dropped ? `+${(l.permutation.keptScoreGain * 100).toFixed(1)}%` : "-");
    cells.push(statusText(l));
    return cells;
  });
  const t = rep.totals;
  const out = [table(headers, rows), ""];
  if (rep.choice) out.push(renderChoice(rep.choice, rep.layers), "");
  out.push(`layers: ${t.rewritten} rewritten, ${t.leftDense} left dense`);
  const already = rep.layers.filter((l) => l.status === "already sparse").length;
  if (already > 0) out.push(`  ${already} already had the ${rep.vnm} pattern and were packed exactly, nothing pruned`);
  out.push(`parameters: ${t.parametersBefore.toLocaleString("en-US")} -> ${t.parametersAfter.toLocaleString("en-US")}`);
  out.push(`file size: ${formatBytes(t.bytesBefore)} -> ${formatBytes(t.bytesAfter)}`);
  if (permuted) {
    const ps = rep.layers.flatMap((l) => (l.permutation ? [l.permutation] : []));
    const folded = ps.filter((p) => p.input === "folded").length;
    const stops = [...new Set(ps.map((p) => p.stoppedBy))].join(", ");
    out.push(`channel permutation: ${ps.length} layer(s); input order folded into the producing layer for ${folded}, in columns for ${ps.length - folded}; search stopped by: ${stops}`);
  }
  const updated = rep.layers.filter((l) => l.sparsegpt);
  if (updated.length > 0) {
    const dead = updated.reduce((n, l) => n + l.sparsegpt!.deadChannels, 0);
    out.push(`method sparsegpt: the KEPT WEIGHTS of ${updated.length} layer(s) were UPDATED with the inverse Hessian XᵀX to absorb the pruning error${updated.some((l) => l.sparsegpt!.refit) ? ", then refitted exactly by least squares" : ""}, so they differ from the original weights (masks by ${updated[0]!.sparsegpt!.maskScore} saliency${dead ? `; ${dead} input channel(s) never active in the calibration data` : ""})`);
  }
  const c = rep.calibration;
  if (c) {
    const unobserved = c.unobservedLayers.length ? `; ${c.unobservedLayers.length} layer(s) pruned by magnitude, their inputs unobservable` : "";
    out.push(`calibration: ${c.description}${c.dataFree ? " -- DATA-FREE: scores and errors reflect random inputs, not real data" : ""}; ${rep.method === "sparsegpt" ? "method sparsegpt" : `score ${rep.score}`}; ${(c.ms / 1000).toFixed(2)} s${unobserved}`);
    const q = c.sequential;
    if (q) {
      const target = q.target === "dense" ? "each fitted to the dense model's layer outputs" : "each on its own pruned inputs";
      out.push(`  sequential: ${q.stages} stage(s) pruned in order, ${target}, on the inputs of the model with the earlier stages pruned; ${q.passes} extra calibration pass(es), ${(q.ms / 1000).toFixed(2)} s`);
    }
  } else {
    out.push(`score: ${rep.score} (no calibration data)`);
  }
  const v = rep.verification;
  if (v) {
    const shapes = v.inputs.map((i) => `${i.name}=${i.dims.join("x")}`).join(" ");
    const worst = v.packing.reduce((m, c) => Math.max(m, c.maxRelError), 0);
    out.push(`verified on onnxruntime (${shapes}): compiled vs pruned-dense max rel. error ${worst.toExponential(2)} (${v.passed ? "exact to float rounding" : "MISMATCH"})`);
    const line = (c: OutputComparison) => {
      const top1 = c.top1Agreement === undefined ? "" : `, top-1 agreement ${pct(c.top1Agreement)}`;
      return `  output '${c.name}' vs original: cosine ${c.cosine.toFixed(4)}, rel. L2 error ${c.relL2Error.toExponential(2)}, max abs error ${c.maxAbsError.toExponential(2)}${top1}`;
    };
    if (v.calibration) {
      out.push(`quality on the ${v.calibration.samples} calibration sample(s)${v.calibration.dataFree ? " (random, data-free)" : ""}:`);
      for (const o of v.calibration.outputs) out.push(line(o));
    } else {
      out.push("quality on random inputs (give --calib for data):");
      for (const o of v.pruning) out.push(line(o));
    }
  }
  out.push(`wrote ${rep.output} in ${(t.compileMs / 1000).toFixed(2)} s`);
  return out.join("\n");
}
