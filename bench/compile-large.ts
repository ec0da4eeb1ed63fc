/**
 * Benchmark: compile a generated >= 1 B-parameter fp16 decoder with external data, and report weights
 * processed per second and the compiler's peak RSS (the compile runs in a child process, measured by
 * /usr/bin/time when present, else by the child's own resource usage).
 *
 *   node dist/bench/compile-large.js [--layers 16] [--hidden 2048] [--intermediate 5632] [--vnm 64:2:8] [--dir /tmp/vnmc-bench]
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { writeModelFile } from "../compiler/serde/write.js";
import { buildLlamaBlock } from "../models/llama.js";

const { values: o } = parseArgs({
  options: {
    layers: { type: "string", default: "16" },
    hidden: { type: "string", default: "2048" },
    intermediate: { type: "string", default: "5632" },
    vocab: { type: "string", default: "32000" },
    vnm: { type: "string", default: "64:2:8" },
    dir: { type: "string", default: "/tmp/vnmc-bench" },
    keep: { type: "boolean", default: false },
  },
});
const dir = o.dir!;
mkdirSync(dir, { recursive: true });
const input = join(dir, "decoder.onnx");
const opts = { layers: Number(o.layers), hidden: Number(o.hidden), intermediate: Number(o.intermediate), vocab: Number(o.vocab), heads: 16, dtype: "fp16" as const, seed: 1 };
if (!existsSync(input)) {
  const t0 = performance.now();
  writeModelFile(buildLlamaBlock(opts), input, { externalData: true });
  console.error(`generated ${input} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
const dataBytes = statSync(`${input}.data`).size;
const cli = fileURLToPath(new URL("../compiler/cli.js", import.meta.url));
const report = join(dir, "report.json");
const out = join(dir, "decoder.vnm.onnx");
const args = [cli, "compile", input, "-o", out, "--vnm", o.vnm!, "--no-verify", "--external-data", "-q", "--report", report];
const timeBin = existsSync("/usr/bin/time") ? "/usr/bin/time" : undefined;
const t0 = performance.now();
const r = timeBin ? spawnSync(timeBin, ["-v", process.execPath, ...args], { encoding: "utf8" }) : spawnSync(process.execPath, args, { encoding: "utf8" });
const wallS = (performance.now() - t0) / 1000;
if (r.status !== 0) {
  console.error(r.stderr);
  process.exit(1);
}
const rssKb = timeBin ? Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1]) : NaN;
const rep = JSON.parse(readFileSync(report, "utf8"));
const prunedBytes = rep.layers
  .filter((l: { status: string }) => l.status === "sparse")
  .reduce((s: number, l: { weightShape: number[] }) => s + l.weightShape[0]! * l.weightShape[1]! * 2, 0);
const result = {
  date: new Date().toISOString().slice(0, 10),
  cpu: cpus()[0]?.model, cores: cpus().length, node: process.version,
  vnm: o.vnm, parameters: rep.totals.parametersBefore, inputDataBytes: dataBytes,
  prunedWeightBytes: prunedBytes, layersRewritten: rep.totals.rewritten,
  wallSeconds: Number(wallS.toFixed(2)),
  weightsMBps: Number((prunedBytes / 1e6 / wallS).toFixed(1)),
  peakRssMB: Number.isFinite(rssKb) ? Math.round(rssKb / 1024) : null,
  outputBytes: statSync(out).size + statSync(`${out}.data`).size,
};
console.log(JSON.stringify(result, null, 2));
if (!o.keep) rmSync(out, { force: true }), rmSync(`${out}.data`, { force: true });
