/**
 * Runs the original model in onnxruntime-node on the calibration samples, one at a time, and streams
 * the inputs of the layers to be pruned into ActivationStats.
 *
 * The layers' inputs become extra graph outputs without decoding the model: a serialized ModelProto
 * followed by a serialized ModelProto that holds only `graph.output` entries parses as their merge
 * (protobuf merges embedded messages and appends repeated fields), i.e. the original model with more
 * outputs. External data is resolved against the model's folder.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import * as ort from "onnxruntime-node";
import {
  AttributeProto_AttributeType as AT, AttributeProtoSchema, GraphProtoSchema, ModelProtoSchema, type NodeProto, NodeProtoSchema, OperatorSetIdProtoSchema,
  type TensorProto, TensorProtoSchema, TypeProtoSchema, ValueInfoProtoSchema,
} from "onnx-buf";
import { Codes, VnmcError } from "../diagnostics.js";
import { DataType, dataTypeName } from "../ir/dtype.js";
import { decodeBf16, decodeF16 } from "../numeric/half.js";
import { ActivationStats } from "./activation-stats.js";
import { hash32 } from "../seeded.js";
import { HessianAccumulator } from "./hessian.js";
import type { CalibInput, CalibrationSource } from "./samples.js";

/** A serialized model held in memory (e.g. the pruned-prefix model of sequential calibration); external data is resolved against `dir`. */
export interface InMemoryModel {
  bytes: Uint8Array;
  dir: string;
}

/** One activation to observe. */
export interface ActivationRequest {
  /** The value's name in the model. */
  name: string;
  /** Input channels (the layer's in_features). */
  K: number;
  /** The value is [K, tokens] (Gemm with transA) rather than [..., K]. */
  channelsFirst: boolean;
  /** Element type of the value (its graph output entry needs one). */
  elemType: number;
  /** A graph input (read from the sample), an existing graph output, or a value to expose. */
  origin: "input" | "output" | "internal";
}

export const requestKey = (r: Pick<ActivationRequest, "name" | "channelsFirst">) => `${r.name}${r.channelsFirst ? "^T" : ""}`;

export interface CollectOptions {
  /** Rows each activation keeps for layer output errors. */
  rowsPerActivation: number;
  /** Also accumulate XᵀX of every activation (SparseGPT). */
  hessian?: boolean;
  /** Soft cap on the bytes of activations fetched by one run (more runs per sample beyond it). */
  fetchBudgetBytes?: number;
  onSample?: (done: number, total: number) => void;
}

export interface CollectResult {
  stats: Map<string, ActivationStats>;
  samples: number;
  /** Model runs (more than samples when the activations of one sample exceed the fetch budget). */
  runs: number;
}

const ORT_TYPE: Record<number, string> = {
  [DataType.FLOAT]: "float32", [DataType.FLOAT16]: "float16", [DataType.DOUBLE]: "float64", [DataType.INT64]: "int64",
  [DataType.INT32]: "int32", [DataType.INT16]: "int16", [DataType.INT8]: "int8", [DataType.UINT8]: "uint8",
  [DataType.UINT16]: "uint16", [DataType.UINT32]: "uint32", [DataType.UINT64]: "uint64", [DataType.BOOL]: "bool",
};

/** onnxruntime tensors for a sample's inputs (data copied, so it is aligned for its typed view). */
export function feedsOf(inputs: CalibInput[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of inputs) {
    const type = ORT_TYPE[i.dataType];
    if (!type) {
      throw new VnmcError(Codes.CALIB_DTYPE, `Calibration input '${i.name}' is ${dataTypeName(i.dataType)}, which onnxruntime-node cannot take as an input.`);
    }
    const buf = new Uint8Array(i.data).buffer; // a copy of exactly the data, aligned
    const data =
      type === "float32" ? new Float32Array(buf) : type === "float64" ? new Float64Array(buf) : type === "float16" || type === "uint16" ? new Uint16Array(buf)
      : type === "int64" ? new BigInt64Array(buf) : type === "uint64" ? new BigUint64Array(buf) : type === "int32" ? new Int32Array(buf)
      : type === "uint32" ? new Uint32Array(buf) : type === "int16" ? new Int16Array(buf) : type === "int8" ? new Int8Array(buf) : new Uint8Array(buf);
    feeds[i.name] = new ort.Tensor(type as "float32", data as Float32Array, i.dims);
  }
  return feeds;
}

/** Float values of an onnxruntime tensor or raw input, or undefined for non-float types. */
export function floatData(type: string, data: unknown): Float32Array | Float64Array | undefined {
  switch (type) {
    case "float32": return data as Float32Array;
    case "float64": return data as Float64Array;
    case "float16": {
      const d = data as Uint16Array;
      return decodeF16(new Uint16Array(d.buffer, d.byteOffset, d.length));
    }
    case "bfloat16": {
      const d = data as Uint16Array;
      return decodeBf16(new Uint16Array(d.buffer, d.byteOffset, d.length));
    }
    default: return undefined;
  }
}

/** Nodes and initializers appended to the model's graph (by the same merge rule as the outputs). */
export interface ExtraNodes {
  nodes: NodeProto[];
  initializers: TensorProto[];
}

/** The model file's bytes followed by graph outputs for `names` (and `extra` nodes; see the file comment). */
export function withExtraOutputs(modelBytes: Uint8Array, outputs: Array<{ name: string; elemType: number }>, extra?: ExtraNodes): Uint8Array {
  if (outputs.length === 0) return modelBytes;
  const tail = toBinary(ModelProtoSchema, create(ModelProtoSchema, {
    graph: create(GraphProtoSchema, {
      node: extra?.nodes ?? [],
      initializer: extra?.initializers ?? [],
      output: outputs.map((o) => create(ValueInfoProtoSchema, {
        name: o.name,
        type: create(TypeProtoSchema, { value: { case: "tensorType", value: { elemType: o.elemType } } }),
      })),
    }),
  }));
  const all = new Uint8Array(modelBytes.byteLength + tail.byteLength);
  all.set(modelBytes, 0);
  all.set(tail, modelBytes.byteLength);
  return all;
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0]!.replace(/\.$/, "");
}

export async function createSession(bytesOrPath: Uint8Array | string, modelDir: string, what: string): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    // Fatal only: errors are reported by vnmc, in one sentence.
    logSeverityLevel: 4,
    extra: { session: { model_external_initializers_file_folder_path: modelDir } },
  };
  try {
    return typeof bytesOrPath === "string"
      ? await ort.InferenceSession.create(bytesOrPath, options)
      : await ort.InferenceSession.create(bytesOrPath, options);
  } catch (e) {
    throw new VnmcError(Codes.CALIB_RUNTIME, `onnxruntime could not load the ${what}: ${firstLine(e)}.`);
  }
}

/** One XᵀX computed by onnxruntime: the activation's Gram matrix [K, K] (float32 per run), accumulated here in float64. */
interface Gram {
  request: ActivationRequest;
  /** The graph output that holds it. */
  output: string;
  acc: HessianAccumulator;
}

/**
 * Nodes computing XᵀX [K, K] of each activation in onnxruntime's GEMM (a JS loop would cost about
 * tokens · K² / 2 multiply-adds per activation on one core): X [..., K] → Reshape [-1, K] →
 * Gemm(transA) ; X [K, n] (channels first) → Gemm(transB). Reduced-precision activations are cast to
 * float first.
 */
export function gramNodes(grams: Array<Pick<Gram, "request" | "output">>): ExtraNodes {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const intAttr = (name: string, i: number) => create(AttributeProtoSchema, { name, type: AT.INT, i: BigInt(i) });
  for (const { request: r, output } of grams) {
    let x = r.name;
    if (r.elemType !== DataType.FLOAT && r.elemType !== DataType.DOUBLE) {
      nodes.push(create(NodeProtoSchema, { name: `${output}_cast`, opType: "Cast", input: [x], output: [`${output}_cast`], attribute: [intAttr("to", DataType.FLOAT)] }));
      x = `${output}_cast`;
    }
    if (r.channelsFirst) {
      nodes.push(create(NodeProtoSchema, { name: `${output}_gemm`, opType: "Gemm", input: [x, x], output: [output], attribute: [intAttr("transB", 1)] }));
      continue;
    }
    initializers.push(create(TensorProtoSchema, { name: `${output}_shape`, dataType: DataType.INT64, dims: [2n], int64Data: [-1n, BigInt(r.K)] }));
    nodes.push(create(NodeProtoSchema, { name: `${output}_flat`, opType: "Reshape", input: [x, `${output}_shape`], output: [`${output}_flat`] }));
    nodes.push(create(NodeProtoSchema, { name: `${output}_gemm`, opType: "Gemm", input: [`${output}_flat`, `${output}_flat`], output: [output], attribute: [intAttr("transA", 1)] }));
  }
  return { nodes, initializers };
}

/**
 * Observes `requests` on every calibration sample of `source`, running the model at `modelPath`.
 * Samples are read, run and dropped one at a time.
 */
export async function collectActivationStats(
  modelPath: string | InMemoryModel, requests: ActivationRequest[], source: CalibrationSource, opts: CollectOptions,
): Promise<CollectResult> {
  const budget = opts.fetchBudgetBytes ?? 512 << 20;
  const stats = new Map<string, ActivationStats>();
  for (const r of requests) {
    const key = requestKey(r);
    if (stats.has(key)) continue;
    const st = new ActivationStats(r.K, opts.rowsPerActivation, hash32(key));
    // XᵀX of a model input is summed in JS as it streams by; of a fetched value, by onnxruntime.
    if (opts.hessian && r.origin === "input") st.hessian = new HessianAccumulator(r.K);
    stats.set(key, st);
  }
  const fetched = dedupe(requests.filter((r) => r.origin !== "input"));
  const fromInputs = requests.filter((r) => r.origin === "input");
  const grams = new Map<string, Gram>();
  if (opts.hessian) for (const r of fetched) grams.set(requestKey(r), { request: r, output: `vnmc_xtx_${grams.size}`, acc: new HessianAccumulator(r.K) });
  const session = await instrumentedSession(modelPath, dedupeNames(fetched.filter((r) => r.origin === "internal")), [...grams.values()]);
  // Tokens per input element, learnt from the first fetch: sizes the groups of outputs fetched per run.
  let tokensPerInputElement: number | undefined;
  let runs = 0;
  try {
    for (let s = 0; s < source.count; s++) {
      const sample = source.sample(s);
      const feeds = feedsOf(sample.inputs);
      const inputElements = sample.inputs.reduce((n, i) => n + i.dims.reduce((a, b) => a * b, 1), 0);
      for (const r of fromInputs) {
        const input = sample.inputs.find((i) => i.name === r.name)!;
        const x = floatData(feeds[r.name]!.type, feeds[r.name]!.data);
        if (!x) throw new Error(`internal: input '${r.name}' of a pruned layer is not a float tensor`);
        addChecked(stats.get(requestKey(r))!, x, r, sample.label, input.dims);
      }
      let next = 0;
      while (next < fetched.length) {
        // Group outputs while their estimated size fits the budget (one at a time until estimated).
        const group: ActivationRequest[] = [fetched[next++]!];
        if (tokensPerInputElement !== undefined) {
          const tokens = tokensPerInputElement * inputElements;
          let bytesInGroup = tokens * group[0]!.K * 4;
          while (next < fetched.length && bytesInGroup + tokens * fetched[next]!.K * 4 <= budget) {
            bytesInGroup += tokens * fetched[next]!.K * 4;
            group.push(fetched[next++]!);
          }
        }
        let out: ort.InferenceSession.OnnxValueMapType;
        try {
          const gramOutputs = group.flatMap((r) => grams.get(requestKey(r))?.output ?? []);
          out = await session.run(feeds, [...new Set(group.map((r) => r.name)), ...gramOutputs], { logSeverityLevel: 4 });
        } catch (e) {
          throw new VnmcError(Codes.CALIB_RUNTIME, `onnxruntime could not run the model on calibration sample '${sample.label}': ${firstLine(e)}.`);
        }
        runs++;
        for (const r of group) {
          const t = out[r.name]!;
          const x = floatData(t.type, t.data);
          if (!x) throw new Error(`internal: activation '${r.name}' came back as ${t.type}`);
          addChecked(stats.get(requestKey(r))!, x, r, sample.label, t.dims);
          const tokens = x.length / r.K;
          const gram = grams.get(requestKey(r));
          if (gram) {
            const g = out[gram.output]!;
            gram.acc.addGram(floatData(g.type, g.data)!, tokens);
          }
          tokensPerInputElement = Math.max(tokensPerInputElement ?? 0, tokens / Math.max(1, inputElements));
        }
      }
      opts.onSample?.(s + 1, source.count);
    }
  } finally {
    await session.release();
  }
  for (const [key, g] of grams) stats.get(key)!.hessian = g.acc;
  return { stats, samples: source.count, runs };
}

/**
 * A session of the model with `exposed` as extra outputs, and the XᵀX of `grams` (the file's bytes
 * are dropped once it is loaded).
 */
async function instrumentedSession(model: string | InMemoryModel, exposed: ActivationRequest[], grams: Gram[]): Promise<ort.InferenceSession> {
  const file = typeof model === "string" ? readFileSync(model) : model.bytes;
  const outputs = [
    ...exposed.map((r) => ({ name: r.name, elemType: r.elemType })),
    ...grams.map((g) => ({ name: g.output, elemType: g.request.elemType === DataType.DOUBLE ? DataType.DOUBLE : DataType.FLOAT })),
  ];
  const bytes = withExtraOutputs(new Uint8Array(file.buffer, file.byteOffset, file.byteLength), outputs, grams.length ? gramNodes(grams) : undefined);
  return createSession(bytes, typeof model === "string" ? dirname(model) : model.dir, "model to gather calibration statistics");
}

function addChecked(st: ActivationStats, x: Float32Array | Float64Array, r: ActivationRequest, label: string, dims: readonly number[]): void {
  const channels = r.channelsFirst ? dims[0] : dims[dims.length - 1];
  if (channels !== r.K) {
    throw new VnmcError(Codes.CALIB_SHAPE, `On calibration sample '${label}', the input '${r.name}' of a pruned layer has shape [${dims.join(", ")}], which does not have ${r.K} channels as its weight needs; check the sample's shapes.`);
  }
  st.add(x, r.channelsFirst);
  if (!st.finite()) {
    throw new VnmcError(Codes.CALIB_NONFINITE, `On calibration sample '${label}', the activation '${r.name}' holds NaN or infinite values; check the sample (or the model's numerics).`);
  }
}

function dedupe(list: ActivationRequest[]): ActivationRequest[] {
  const seen = new Set<string>();
  return list.filter((r) => (seen.has(requestKey(r)) ? false : (seen.add(requestKey(r)), true)));
}

function dedupeNames(list: ActivationRequest[]): ActivationRequest[] {
  const seen = new Set<string>();
  return list.filter((r) => (seen.has(r.name) ? false : (seen.add(r.name), true)));
}

/** A model computing AᵀB (rows: A, B [n, K]) or A·Bᵀ (channels first: [K, n]) in float32: one GEMM per sample. */
function crossGramModel(channelsFirst: boolean): Uint8Array {
  const f32 = (name: string) => create(ValueInfoProtoSchema, { name, type: create(TypeProtoSchema, { value: { case: "tensorType", value: { elemType: DataType.FLOAT } } }) });
  const attr = create(AttributeProtoSchema, { name: channelsFirst ? "transB" : "transA", type: AT.INT, i: 1n });
  return toBinary(ModelProtoSchema, create(ModelProtoSchema, {
    irVersion: 8n, producerName: "vnmc", opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: 17n })],
    graph: create(GraphProtoSchema, {
      name: "cross_gram", input: [f32("a"), f32("b")], output: [f32("c")],
      node: [create(NodeProtoSchema, { name: "gemm", opType: "Gemm", input: ["a", "b"], output: ["c"], attribute: [attr] })],
    }),
  }));
}

/**
 * Error-correcting sequential calibration: per activation, C = X̂ᵀX [K, K] summed over the samples
 * (float32 per sample, float64 across), where X̂ is the activation in `model` (the pruned-prefix model)
 * and X the same activation in `dense` (the original model), token for token. Both models run on
 * every sample. Activations that are model inputs are skipped (there X̂ = X, so C = XᵀX).
 */
export async function collectCrossGrams(
  dense: string, model: string | InMemoryModel, requests: ActivationRequest[], source: CalibrationSource,
): Promise<{ cross: Map<string, Float64Array>; runs: number }> {
  const fetched = dedupe(requests.filter((r) => r.origin !== "input"));
  const cross = new Map<string, Float64Array>();
  if (fetched.length === 0) return { cross, runs: 0 };
  const names = [...new Set(fetched.map((r) => r.name))];
  const exposed = dedupeNames(fetched.filter((r) => r.origin === "internal"));
  const sessions = [await instrumentedSession(dense, exposed, []), await instrumentedSession(model, exposed, [])];
  const gram = new Map<boolean, ort.InferenceSession>();
  let runs = 0;
  const asF32 = (type: string, data: unknown, name: string): Float32Array => {
    const x = floatData(type, data);
    if (!x) throw new Error(`internal: activation '${name}' came back as ${type}`);
    return x instanceof Float32Array ? x : Float32Array.from(x);
  };
  try {
    for (const r of fetched) if (!gram.has(r.channelsFirst)) gram.set(r.channelsFirst, await createSession(crossGramModel(r.channelsFirst), ".", "cross-Gram model"));
    for (const r of fetched) cross.set(requestKey(r), new Float64Array(r.K * r.K));
    for (let s = 0; s < source.count; s++) {
      const sample = source.sample(s);
      const outs: ort.InferenceSession.OnnxValueMapType[] = [];
      for (const session of sessions) {
        try {
          outs.push(await session.run(feedsOf(sample.inputs), names, { logSeverityLevel: 4 }));
        } catch (e) {
          throw new VnmcError(Codes.CALIB_RUNTIME, `onnxruntime could not run the model on calibration sample '${sample.label}': ${firstLine(e)}.`);
        }
        runs++;
      }
      for (const r of fetched) {
        const x = outs[0]![r.name]!, xh = outs[1]![r.name]!;
        const a = asF32(xh.type, xh.data, r.name), b = asF32(x.type, x.data, r.name);
        const n = a.length / r.K;
        const dims = r.channelsFirst ? [r.K, n] : [n, r.K];
        const c = await gram.get(r.channelsFirst)!.run({ a: new ort.Tensor("float32", a, dims), b: new ort.Tensor("float32", b, dims) });
        const g = c.c!.data as Float32Array;
        const acc = cross.get(requestKey(r))!;
        for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + g[i]!;
      }
    }
  } finally {
    for (const session of [...sessions, ...gram.values()]) await session.release();
  }
  return { cross, runs };
}
