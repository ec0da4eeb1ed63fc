/**
 * Accuracy of the trained test models (see README.md beside this file) on their committed eval data,
 * run in stock onnxruntime-node. Works on the original models and on vnmc-compiled ones (those run
 * through their model-local fallback function, or the VNMSparseGemm kernel where its library is
 * registered through `sessionOptions`).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";

/** The folder of the committed models and eval data (this file's folder in the source tree). */
export function trainedDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // Compiled to dist/models/trained/eval.js, the data stays in models/trained/.
  for (const dir of [here, join(here, "..", "..", "..", "models", "trained")]) {
    if (existsSync(join(dir, "charlm.onnx"))) return dir;
  }
  throw new Error(`trained models not found next to ${here} nor in models/trained/ of the repository`);
}

export const CHARLM_MODEL = "charlm.onnx";
export const DIGITS_VIT_MODEL = "digits_vit.onnx";

/** Recorded metrics of the committed models (metrics.json, the numbers of README.md). */
export interface RecordedMetrics {
  charlm: { perplexity: number; windows: number; chars: number };
  digitsVit: { accuracy: number; images: number };
}

export function recordedMetrics(dir = trainedDir()): RecordedMetrics {
  return JSON.parse(readFileSync(join(dir, "metrics.json"), "utf8")) as RecordedMetrics;
}

export interface NpyArray {
  dtype: "<f4" | "<i8" | "<i4" | "|u1";
  shape: number[];
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array;
}

/** Read a little-endian, C-ordered .npy file (version 1-3) of float32, int64, int32 or uint8. */
export function readNpy(path: string): NpyArray {
  const buf = readFileSync(path);
  if (buf.length < 10 || buf[0] !== 0x93 || buf.toString("latin1", 1, 6) !== "NUMPY") throw new Error(`${path}: not a .npy file`);
  const major = buf[6]!;
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.toString("latin1", major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error(`${path}: unreadable .npy header ${header}`);
  if (fortran !== "False") throw new Error(`${path}: Fortran-ordered arrays are not supported`);
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = buf.subarray(start);
  const copy = (n: number) => {
    if (bytes.length < count * n) throw new Error(`${path}: ${bytes.length} data bytes, expected ${count * n}`);
    return new Uint8Array(bytes.subarray(0, count * n)).buffer; // aligned copy
  };
  switch (descr) {
    case "<f4": return { dtype: descr, shape, data: new Float32Array(copy(4)) };
    case "<i8": return { dtype: descr, shape, data: new BigInt64Array(copy(8)) };
    case "<i4": return { dtype: descr, shape, data: new Int32Array(copy(4)) };
    case "|u1": return { dtype: descr, shape, data: new Uint8Array(copy(1)) };
    default: throw new Error(`${path}: dtype ${descr} not supported`);
  }
}

export interface EvalOptions {
  /** Folder of the eval data; default: trainedDir(). */
  dataDir?: string;
  /** Sequences (charlm) or images (ViT) per run; default 16 / all. */
  batch?: number;
  /** Use only the first `limit` eval windows (charlm) or images (ViT). */
  limit?: number;
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

type ModelSource = string | Uint8Array;

async function open(model: ModelSource, opts: EvalOptions): Promise<ort.InferenceSession> {
  const so: ort.InferenceSession.SessionOptions = { logSeverityLevel: 3, ...opts.sessionOptions };
  return typeof model === "string" ? ort.InferenceSession.create(model, so) : ort.InferenceSession.create(model, so);
}

export interface CharLmResult {
  /** exp(mean negative log-likelihood per predicted character), natural log. */
  perplexity: number;
  /** Mean negative log-likelihood per character, in nats. */
  nll: number;
  /** Predicted characters (windows x context). */
  chars: number;
  windows: number;
}

/**
 * Per-character perplexity of a character-level LM (input int64 tokens [batch, seq], output logits
 * [batch, seq, vocab]) on charlm.eval.npy: token ids [N, ctx+1] (uint8, or int64) of held-out windows;
 * the model reads [:, :ctx] and every position t is scored on token t+1.
 */
export async function evalCharLm(model: ModelSource, opts: EvalOptions = {}): Promise<CharLmResult> {
  const dir = opts.dataDir ?? trainedDir();
  const ev = readNpy(join(dir, "charlm.eval.npy"));
  if ((ev.dtype !== "<i8" && ev.dtype !== "|u1") || ev.shape.length !== 2) throw new Error(`charlm.eval.npy: expected uint8 or int64 [N, ctx+1], got ${ev.dtype} [${ev.shape}]`);
  const [total, width] = ev.shape as [number, number];
  const n = Math.min(total, opts.limit ?? total);
  const ctx = width - 1;
  const tokens = ev.data instanceof BigInt64Array ? ev.data : BigInt64Array.from(ev.data as Uint8Array, (v) => BigInt(v));
  const batch = opts.batch ?? 16;
  const session = await open(model, opts);
  try {
    const inName = session.inputNames[0]!, outName = session.outputNames[0]!;
    let nllSum = 0, count = 0;
    for (let s = 0; s < n; s += batch) {
      const b = Math.min(batch, n - s);
      const input = new BigInt64Array(b * ctx);
      for (let i = 0; i < b; i++) input.set(tokens.subarray((s + i) * width, (s + i) * width + ctx), i * ctx);
      const out = (await session.run({ [inName]: new ort.Tensor("int64", input, [b, ctx]) }))[outName]!;
      const dims = out.dims;
      if (dims.length !== 3 || dims[0] !== b || dims[1] !== ctx) throw new Error(`charlm: output ${outName} has shape [${dims}], expected [${b}, ${ctx}, vocab]`);
      const vocab = dims[2]!;
      const logits = out.data as Float32Array;
      for (let i = 0; i < b; i++) {
        for (let t = 0; t < ctx; t++) {
          const row = (i * ctx + t) * vocab;
          let max = -Infinity;
          for (let v = 0; v < vocab; v++) max = Math.max(max, logits[row + v]!);
          let sum = 0;
          for (let v = 0; v < vocab; v++) sum += Math.exp(logits[row + v]! - max);
          const target = Number(tokens[(s + i) * width + t + 1]!);
          nllSum += Math.log(sum) + max - logits[row + target]!;
          count++;
        }
      }
    }
    const nll = nllSum / count;
    return { perplexity: Math.exp(nll), nll, chars: count, windows: n };
  } finally {
    await session.release();
  }
}

export interface ClassifierResult {
  /** Top-1 accuracy in [0, 1]. */
  accuracy: number;
  correct: number;
  total: number;
}

/**
 * Top-1 accuracy of a digits classifier (input float32 [batch, 1, 8, 8], pixels in [0, 1]; output
 * logits [batch, 10]) on digits.eval.images.npy / digits.eval.labels.npy.
 */
export async function evalDigitsVit(model: ModelSource, opts: EvalOptions = {}): Promise<ClassifierResult> {
  const dir = opts.dataDir ?? trainedDir();
  const images = readNpy(join(dir, "digits.eval.images.npy"));
  const labels = readNpy(join(dir, "digits.eval.labels.npy"));
  if (images.dtype !== "<f4" || images.shape.length !== 4) throw new Error(`digits.eval.images.npy: expected float32 [N, 1, 8, 8], got ${images.dtype} [${images.shape}]`);
  if (labels.dtype !== "<i8" || labels.shape[0] !== images.shape[0]) throw new Error(`digits.eval.labels.npy: expected int64 [${images.shape[0]}]`);
  const total = Math.min(images.shape[0]!, opts.limit ?? images.shape[0]!);
  const per = images.shape.slice(1).reduce((a, b) => a * b, 1);
  const batch = opts.batch ?? total;
  const px = images.data as Float32Array, lab = labels.data as BigInt64Array;
  const session = await open(model, opts);
  try {
    const inName = session.inputNames[0]!, outName = session.outputNames[0]!;
    let correct = 0;
    for (let s = 0; s < total; s += batch) {
      const b = Math.min(batch, total - s);
      const input = new ort.Tensor("float32", px.slice(s * per, (s + b) * per), [b, ...images.shape.slice(1)]);
      const out = (await session.run({ [inName]: input }))[outName]!;
      const classes = out.dims[out.dims.length - 1]!;
      if (out.dims[0] !== b) throw new Error(`digits: output ${outName} has shape [${out.dims}], expected [${b}, classes]`);
      const logits = out.data as Float32Array;
      for (let i = 0; i < b; i++) {
        let best = 0;
        for (let c = 1; c < classes; c++) if (logits[i * classes + c]! > logits[i * classes + best]!) best = c;
        if (BigInt(best) === lab[s + i]) correct++;
      }
    }
    return { accuracy: correct / total, correct, total };
  } finally {
    await session.release();
  }
}
