/**
 * The report's section on a V:N:M choice (--sparsity / --speedup): the target, the whole-model
 * prediction, and per layer the choice, its predicted speedup and error, the runner-up and why.
 */
import type { ChoiceSummary } from './choose-step.js';
import { errorText, type LayerChoice } from './choose-vnm.js';

/** The summary as the report keeps it: per-layer verdicts live in the layer rows. */
export type ChoiceReport = Omit<ChoiceSummary, 'layers'>;

export function choiceReport(s: ChoiceSummary): ChoiceReport {
  const { layers: _layers, ...rest } = s;
  return { ...rest, ms: Math.round(s.ms) };
}

function targetText(c: ChoiceReport): string {
  const t = c.target.kind === 'speedup' ? `speedup >= ${c.target.value}` : `sparsity >= ${(c.target.value * 100).toFixed(1)}%`;
  return `${t} at --tokens ${c.tokens}`;
}

const measureText: Record<ChoiceReport['errorMeasure'], string> = {
  output: 'relative output error on the calibration rows',
  'kept-score': '1 - kept-score fraction (no calibration rows: give --calib for output errors)',
  mixed: 'relative output error where calibration rows exist, 1 - kept-score fraction elsewhere',
};

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Text lines for the human-readable report. */
export function renderChoice(c: ChoiceReport, layers: Array<{ node: string; choice?: LayerChoice }>): string {
  const how = c.perLayer ? 'per layer' : `one setting for all layers: ${c.vnm}`;
  const out = [
    `V:N:M chosen for ${targetText(c)}, ${how}: predicted GEMM speedup ${c.predictedSpeedup.toFixed(2)}x, sparsity ${(c.sparsity * 100).toFixed(1)}%`,
    `  ranked by ${measureText[c.errorMeasure]}, estimated on up to ${c.sampleRows} output channels per trial (${c.trials} trials${c.exact ? '' : ', near-optimal'})`,
    `  speedups (m = measured, else modelled): ${c.speedupSource}`,
  ];
  const rows = layers
    .filter((l) => l.choice)
    .map(({ node, choice: x }) => [
      node, x!.vnm, `${x!.predictedSpeedup.toFixed(2)}x${x!.speedupSource === 'measured' ? ' m' : ''}`, errorText(x!.error),
      x!.runnerUp ? `${x!.runnerUp.vnm} (${errorText(x!.runnerUp.error)}, ${x!.runnerUp.predictedSpeedup.toFixed(2)}x)` : '-', x!.reason,
    ]);
  out.push(table(['node', 'V:N:M', 'speedup', 'est. err', 'runner-up', 'why'], rows));
  return out.join('\n');
}
