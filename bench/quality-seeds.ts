/**
 * Summary of bench/quality.js runs that differ only in the calibration samples (a trained model
 * calibrated on other draws of its training split: models/train/make_calib_subsets.py), so that a
 * setting's difference to the defaults can be told from the luck of one calibration draw and of the
 * eval items (the ViT's 359 test images, the char-LM's 128 windows). Not a test.
 *
 *   node dist/bench/quality.js --models digits --vnm 64:2:5,64:2:8 --only 'defaults \(|defaults \+' \
 *     --variant 'sweeps1={"refitSweeps":1}' ... --calib digits=DIR/seed<k> --items --json seed<k>.json   (for k in 1..20)
 *   node dist/bench/quality-seeds.js seed1.json seed2.json ...
 *
 * For every setting against the defaults row of the same V:N:M, with S runs (calibration draws) of n
 * test items: the mean paired NLL difference d = mean over runs s and items i of NLL_setting − NLL_defaults,
 * its standard error as a two-way sum, sqrt(var_s(mean_i d)/S + var_i(mean_s d)/n) (the spread between
 * calibration draws plus the spread between test items; this counts their interaction twice, so it is a
 * little conservative), the runs in which the setting's NLL is lower, and the same for top-1 accuracy
 * (percentage points) with the images gained / lost per run (McNemar's discordant pairs, averaged).
 */
import { readFileSync } from "node:fs";

interface Row {
  model: string;
  setting: string;
  metric: number;
  nll?: number;
  itemNll?: number[];
  itemCorrect?: number[];
}

const files = process.argv.slice(2);
if (files.length < 2) throw new Error("give two or more bench/quality.js --items --json outputs");
const runs = files.map((f) => (JSON.parse(readFileSync(f, "utf8")) as { rows: Row[] }).rows.filter((r) => r.itemNll));
const S = runs.length;

const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;
const variance = (a: number[]): number => {
  const m = mean(a);
  return a.reduce((x, y) => x + (y - m) ** 2, 0) / (a.length - 1);
};
const sd = (a: number[]): number => Math.sqrt(variance(a));

/** Two-way mean and standard error of a [runs][items] table of paired differences. */
function twoWay(d: number[][]): { mean: number; se: number; seRuns: number; seItems: number } {
  const n = d[0]!.length;
  const perRun = d.map(mean);
  const perItem = Array.from({ length: n }, (_, i) => mean(d.map((r) => r[i]!)));
  const seRuns = Math.sqrt(variance(perRun) / d.length);
  const seItems = Math.sqrt(variance(perItem) / n);
  return { mean: mean(perRun), se: Math.hypot(seRuns, seItems), seRuns, seItems };
}

const sign = (x: number, digits: number): string => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(digits)}`;
const models = [...new Set(runs[0]!.map((r) => r.model))];
console.log(`# ${S} runs (calibration draws): ${files.join(" ")}`);
for (const model of models) {
  const labels = runs[0]!.filter((r) => r.model === model && r.setting !== "dense").map((r) => r.setting);
  const vnms = [...new Set(labels.map((l) => l.split(" ")[0]!))];
  const vit = runs[0]!.some((r) => r.model === model && r.itemCorrect);
  for (const vnm of vnms) {
    const defaultsLabel = `${vnm} defaults (--calib only)`;
    const get = (s: number, label: string): Row => {
      const r = runs[s]!.find((x) => x.model === model && x.setting === label);
      if (!r) throw new Error(`${files[s]}: no row '${label}' of ${model}`);
      return r;
    };
    console.log(`\n## ${model} ${vnm}\n`);
    console.log(`| setting | ${vit ? "top-1 % mean (sd, min-max over runs) | " : ""}NLL mean (sd) | NLL − defaults ± SE (runs, items) | runs with lower NLL |${vit ? " top-1 − defaults, pp ± SE | images gained / lost per run |" : ""}`);
    console.log(`|---|${vit ? "---|" : ""}---|---|---|${vit ? "---|---|" : ""}`);
    for (const label of labels.filter((l) => l.startsWith(`${vnm} `))) {
      const rows = runs.map((_, s) => get(s, label));
      const defs = runs.map((_, s) => get(s, defaultsLabel));
      const nlls = rows.map((r) => r.nll!);
      const top1 = rows.map((r) => r.metric);
      let cells = `| ${label} |`;
      if (vit) cells += ` ${mean(top1).toFixed(2)} (${sd(top1).toFixed(2)}, ${Math.min(...top1).toFixed(1)}-${Math.max(...top1).toFixed(1)}) |`;
      cells += ` ${mean(nlls).toFixed(4)} (${sd(nlls).toFixed(4)}) |`;
      if (label === defaultsLabel) {
        console.log(cells + ` - | - |${vit ? " - | - |" : ""}`);
        continue;
      }
      const d = rows.map((r, s) => r.itemNll!.map((v, i) => v - defs[s]!.itemNll![i]!));
      const t = twoWay(d);
      const lower = rows.filter((r, s) => r.nll! < defs[s]!.nll!).length;
      cells += ` ${sign(t.mean, 4)} ± ${t.se.toFixed(4)} (${t.seRuns.toFixed(4)}, ${t.seItems.toFixed(4)}) | ${lower} / ${S} |`;
      if (vit) {
        const c = rows.map((r, s) => r.itemCorrect!.map((v, i) => 100 * (v - defs[s]!.itemCorrect![i]!)));
        const a = twoWay(c);
        const gained = mean(c.map((r) => r.filter((v) => v > 0).length));
        const lost = mean(c.map((r) => r.filter((v) => v < 0).length));
        cells += ` ${sign(a.mean, 2)} ± ${a.se.toFixed(2)} | ${gained.toFixed(1)} / ${lost.toFixed(1)} |`;
      }
      console.log(cells);
    }
  }
}
