/** Quality budgets: a compiled model's verification numbers against the limits its config sets. */
import type { CompileReport } from "../report.js";
import type { OutputComparison } from "../verify/compare.js";
import type { QualityBudget } from "./config.js";

/** The numbers budgets are checked on (kept in the build manifest, so a skipped model is re-checked). */
export interface QualityNumbers {
  /** "calibration": compiled vs original on the calibration samples; "generated": on verification's generated inputs. */
  source: "calibration" | "generated";
  samples?: number;
  dataFree?: boolean;
  outputs: OutputComparison[];
}

export interface BudgetMiss {
  metric: keyof QualityBudget;
  output?: string;
  value?: number;
  limit: number;
  message: string;
}

/** The report's compiled-vs-original comparison: on calibration samples when there were any. */
export function qualityOf(report: CompileReport): QualityNumbers | undefined {
  const v = report.verification;
  if (!v) return undefined;
  if (v.calibration) return { source: "calibration", samples: v.calibration.samples, dataFree: v.calibration.dataFree, outputs: v.calibration.outputs };
  return { source: "generated", outputs: v.pruning };
}

const fmt = (x: number): string => (Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(4).replace(/0+$/, "").replace(/\.$/, "") : x.toExponential(2));

/** Every budget the numbers miss (empty when all are kept). */
export function checkBudget(budget: QualityBudget, q: QualityNumbers | undefined): BudgetMiss[] {
  const metrics = (Object.keys(budget) as (keyof QualityBudget)[]).filter((k) => budget[k] !== undefined);
  if (metrics.length === 0) return [];
  if (!q) {
    return metrics.map((metric) => ({
      metric, limit: budget[metric]!,
      message: `${metric} cannot be checked: the model was compiled without verification; remove verify: false.`,
    }));
  }
  const on = q.source === "calibration" ? `on ${q.samples} calibration sample${q.samples === 1 ? "" : "s"}${q.dataFree ? " (generated, data-free)" : ""}` : "on verification's generated inputs (set calib for real data)";
  const misses: BudgetMiss[] = [];
  const worst = (pick: (o: OutputComparison) => number | undefined, lowest: boolean): { o: OutputComparison; v: number } | undefined => {
    let best: { o: OutputComparison; v: number } | undefined;
    for (const o of q.outputs) {
      const v = pick(o);
      if (v === undefined || Number.isNaN(v)) continue;
      if (!best || (lowest ? v < best.v : v > best.v)) best = { o, v };
    }
    return best;
  };
  if (budget.maxOutputError !== undefined) {
    const w = worst((o) => o.relL2Error, false);
    if (w && w.v > budget.maxOutputError) {
      misses.push({
        metric: "maxOutputError", output: w.o.name, value: w.v, limit: budget.maxOutputError,
        message: `output '${w.o.name}' has relative error ${fmt(w.v)} ${on}, over maxOutputError ${budget.maxOutputError}`,
      });
    }
  }
  if (budget.minCosine !== undefined) {
    const w = worst((o) => o.cosine, true);
    if (w && w.v < budget.minCosine) {
      misses.push({
        metric: "minCosine", output: w.o.name, value: w.v, limit: budget.minCosine,
        message: `output '${w.o.name}' has cosine ${fmt(w.v)} ${on}, under minCosine ${budget.minCosine}`,
      });
    }
  }
  if (budget.minTop1Agreement !== undefined) {
    const w = worst((o) => o.top1Agreement, true);
    if (!w) {
      misses.push({
        metric: "minTop1Agreement", limit: budget.minTop1Agreement,
        message: "minTop1Agreement cannot be checked: no output looks like class scores; drop it or use minCosine",
      });
    } else if (w.v < budget.minTop1Agreement) {
      misses.push({
        metric: "minTop1Agreement", output: w.o.name, value: w.v, limit: budget.minTop1Agreement,
        message: `output '${w.o.name}' has top-1 agreement ${fmt(w.v)} ${on}, under minTop1Agreement ${budget.minTop1Agreement}`,
      });
    }
  }
  return misses;
}
