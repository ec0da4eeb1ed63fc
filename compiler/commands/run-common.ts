/** What `vnmc run` and `vnmc bench` share: shapes, generated inputs, the three kinds of session, output stats. */
import type * as ort from "onnxruntime-node";
import { Codes, VnmcError } from "../diagnostics.js";
import type { Model } from "../ir/model.js";
import { NativeSession } from "../runtime/native-session.js";
import { nativeStatus } from "../runtime/native-lib.js";
import { readModelFile } from "../serde/read.js";
import { asFloat } from "../verify/compare.js";
import { inputSpecs, randomFeeds, type InputSpec, type TensorCtor } from "../verify/random-inputs.js";
export { parsePositiveInt, parseShapeOptions } from "./options.js";

export function readModel(path: string): Model {
  return readModelFile(path).model;
}

/** onnxruntime-node, loaded on first use (so that `vnmc lib-path` and `--help` stay fast). */
export async function ortNode(): Promise<typeof ort> {
  return import("onnxruntime-node");
}

/** Input specs and seeded random feeds (onnxruntime-node tensors; NativeSession takes them too). */
export async function generatedInputs(model: Model, shapes: Record<string, number[]>, seed = 1234): Promise<{ specs: InputSpec[]; feeds: Record<string, ort.Tensor> }> {
  const specs = inputSpecs(model, shapes);
  const { Tensor } = await ortNode();
  return { specs, feeds: randomFeeds(specs, Tensor as unknown as TensorCtor, seed) as Record<string, ort.Tensor> };
}

export type RuntimeKind = "native" | "fallback" | "dense";

/** A session of any kind, behind one interface. */
export interface AnySession {
  kind: RuntimeKind;
  label: string;
  createMs: number;
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

export const RUNTIME_LABEL: Record<RuntimeKind, string> = {
  native: "vnmc kernels (native runtime)",
  fallback: "fallback function (onnxruntime-node)",
  dense: "dense original (onnxruntime-node)",
};

/** onnxruntime's message on one line (its details often follow on the next lines), without a final period. */
function oneLine(e: unknown): string {
  const m = String((e as Error)?.message ?? e).replace(/\s+/g, " ").trim().replace(/\.$/, "");
  return m.length > 400 ? `${m.slice(0, 400)}…` : m;
}

/**
 * Opens `path` for `kind`: native = NativeSession with libvnmc_ort.so; fallback and dense =
 * onnxruntime-node (which inlines the model's fallback function). threads = 0: onnxruntime's default.
 */
export async function openSession(kind: RuntimeKind, path: string, threads: number): Promise<AnySession> {
  const t0 = performance.now();
  const common = { ...(threads ? { intraOpNumThreads: threads } : {}), interOpNumThreads: 1, executionMode: "sequential" as const, logSeverityLevel: 3 as const };
  try {
    if (kind === "native") {
      const s = await NativeSession.create(path, common);
      return { kind, label: RUNTIME_LABEL[kind], createMs: performance.now() - t0, run: (f) => s.run(f) as unknown as Promise<Record<string, ort.Tensor>>, release: () => s.release() };
    }
    const { InferenceSession } = await ortNode();
    const s = await InferenceSession.create(path, { ...common, graphOptimizationLevel: "all" });
    return { kind, label: RUNTIME_LABEL[kind], createMs: performance.now() - t0, run: (f) => s.run(f), release: () => s.release() };
  } catch (e) {
    if (e instanceof VnmcError) throw e;
    throw new VnmcError(Codes.RUNTIME_LOAD, `onnxruntime could not load '${path}' (${RUNTIME_LABEL[kind]}): ${oneLine(e)}.`);
  }
}

export async function runOnce(s: AnySession, feeds: Record<string, ort.Tensor>, path: string): Promise<Record<string, ort.Tensor>> {
  try {
    return await s.run(feeds);
  } catch (e) {
    throw new VnmcError(
      Codes.RUNTIME_RUN,
      `onnxruntime could not run '${path}' (${s.label}) on generated inputs: ${oneLine(e)}; give input shapes with --shape name=1x128.`,
    );
  }
}

/** Whether the native runtime can be used, and why not. */
export function nativeAvailability(): { ok: boolean; reason?: string } {
  const st = nativeStatus();
  return st.available ? { ok: true } : { ok: false, reason: st.reason };
}

export interface OutputStats {
  name: string;
  type: string;
  dims: number[];
  /** Sum of all elements (float outputs decoded), a simple checksum. */
  sum: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  /** FNV-1a of the raw bytes, 8 hex digits: equal outputs, equal hash. */
  hash: string;
}

function fnv1a(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

export function outputStats(name: string, t: ort.Tensor): OutputStats {
  const d = t.data as unknown as ArrayBufferView;
  const raw = ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : new Uint8Array(0);
  let values: ArrayLike<number> | undefined = asFloat(t.type, t.data);
  if (!values) {
    if (t.type === "int64" || t.type === "uint64") values = Array.from(t.data as BigInt64Array, Number);
    else if (ArrayBuffer.isView(d)) values = t.data as unknown as ArrayLike<number>;
    else values = [];
  }
  let sum = 0, sq = 0, min = Infinity, max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = Number(values[i]);
    sum += v;
    sq += v * v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const n = values.length;
  const mean = n ? sum / n : 0;
  return { name, type: t.type, dims: [...t.dims], sum, mean, std: n ? Math.sqrt(Math.max(0, sq / n - mean * mean)) : 0, min: n ? min : 0, max: n ? max : 0, hash: fnv1a(raw) };
}

export function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a >= 1e5 || a < 1e-3) ? x.toExponential(4) : x.toFixed(5);
}

export function fmtMs(ms: number): string {
  return ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(3)} ms`;
}

/** A plain text table; the first `leftColumns` columns are left-aligned, the rest (numbers) right-aligned. */
export function table(rows: string[][], leftColumns = 1): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows.map((r) => r.map((cell, c) => (c < leftColumns ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ").trimEnd()).join("\n");
}
