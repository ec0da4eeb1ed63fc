/**
 * `vnmc/runtime`: run compiled models on vnmc's own kernels from Node.
 *
 * onnxruntime-node cannot load custom-op libraries, so NativeSession creates its sessions through
 * vnmc's small N-API addon (runtime-ops/node/), on the same libonnxruntime.so.1 that onnxruntime-node
 * ships (one runtime in the process; both can be used side by side), with libvnmc_ort.so registered.
 * The interface follows onnxruntime-node's InferenceSession:
 *
 *     import { NativeSession } from "vnmc/runtime";
 *     import { Tensor } from "onnxruntime-common";   // or onnxruntime-node's re-export
 *     const s = await NativeSession.create("model.vnm.onnx", { intraOpNumThreads: 4 });
 *     const y = await s.run({ x: new Tensor("float32", data, [1, 768]) });
 *     await s.release();
 *
 * Tensors: float32, float16, float64, int8/16/32/64, uint8/16/32/64 and bool (no strings).
 */
import { createRequire } from "node:module";
import { Tensor } from "onnxruntime-common";
import { Codes, VnmcError } from "../diagnostics.js";
import { nativeStatus, type NativeStatus } from "./native-lib.js";

export { libraryPath, addonPath, ortRuntimePath, nativeStatus, type NativeStatus } from "./native-lib.js";

export interface NativeSessionOptions {
  /** Threads of the session's intra-op pool (0 or absent: onnxruntime's default, one per core). */
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "layout" | "all";
  executionMode?: "sequential" | "parallel";
  /** 0 verbose … 4 fatal (default 2, warnings). */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * Register libvnmc_ort.so (default true). With false the session is plain onnxruntime, which
   * inlines the model's fallback function for com.vnmc::VNMSparseGemm.
   */
  customOps?: boolean;
  /** Session configuration entries (onnxruntime_session_options_config_keys.h). */
  extra?: Record<string, string>;
  /**
   * Run on the JavaScript thread, blocking it for the run, as onnxruntime-node does (default false:
   * runs go to a libuv worker thread and the event loop stays free). Saves the hand-off between
   * threads (tens of microseconds per run), which matters only for very small models.
   */
  runOnMainThread?: boolean;
}

interface Binding {
  loadRuntime(path: string): { version: string; apiVersion: number };
  loadCustomOps(path: string): void;
  createSession(model: string | Uint8Array, options: object): Promise<{ handle: unknown; inputNames: string[]; outputNames: string[]; inputTypes: number[]; outputTypes: number[] }>;
  run(handle: unknown, names: string[], types: number[], dims: number[][], data: ArrayBufferView[], outputNames: string[], sync: boolean): Promise<Array<{ type: number; dims: number[]; data: ArrayBuffer }>>;
  release(handle: unknown): void;
  readBandwidth(mebibytes: number, threads: number, reps: number): number;
}

type Ctor = new (buffer: ArrayBuffer) => ArrayBufferView;
/** onnxruntime-common tensor type ↔ ONNX element type, and the typed array of each. */
const TYPES: Array<[Tensor.Type, number, Ctor]> = [
  ["float32", 1, Float32Array],
  ["uint8", 2, Uint8Array],
  ["int8", 3, Int8Array],
  ["uint16", 4, Uint16Array],
  ["int16", 5, Int16Array],
  ["int32", 6, Int32Array],
  ["int64", 7, BigInt64Array],
  ["bool", 9, Uint8Array],
  ["float16", 10, Uint16Array],
  ["float64", 11, Float64Array],
  ["uint32", 12, Uint32Array],
  ["uint64", 13, BigUint64Array],
];
const BY_NAME = new Map(TYPES.map(([n, t]) => [n as string, t]));
const BY_CODE = new Map(TYPES.map(([n, t, c]) => [t, [n, c] as const]));
const LEVELS = { disabled: 0, basic: 1, extended: 2, layout: 3, all: 99 } as const;

let binding: Binding | undefined;
let runtimeVersion = "";

/** Loads the addon, onnxruntime-node's runtime and libvnmc_ort.so once per process. */
function loadBinding(): Binding {
  if (binding) return binding;
  const st: NativeStatus = nativeStatus();
  if (!st.available) {
    throw new VnmcError(Codes.NATIVE_UNAVAILABLE, `The vnmc native runtime is not available: ${st.reason}.`);
  }
  try {
    const b = createRequire(import.meta.url)(st.addon) as Binding;
    runtimeVersion = b.loadRuntime(st.runtime!).version;
    b.loadCustomOps(st.library);
    binding = b;
    return b;
  } catch (e) {
    throw new VnmcError(Codes.NATIVE_UNAVAILABLE, `The vnmc native runtime could not be loaded: ${firstLine(e)}.`);
  }
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0]!.trim().replace(/\.$/, "");
}

/** The onnxruntime version the native sessions run on (loads the runtime). */
export function nativeRuntimeVersion(): string {
  loadBinding();
  return runtimeVersion;
}

/**
 * The best streaming-read rate of this machine in GB/s (1e9 bytes/s): `threads` threads each sum
 * their slice of a `mebibytes` buffer, best of `reps` passes. For benchmarks' memory-bandwidth floor;
 * blocks the calling thread.
 */
export function measureReadBandwidth(mebibytes = 1024, threads = 1, reps = 5): number {
  return loadBinding().readBandwidth(mebibytes, threads, reps);
}

/** An onnxruntime session with vnmc's kernels registered, created through vnmc's addon. */
export class NativeSession {
  #handle: unknown;
  #released = false;
  #sync: boolean;

  private constructor(
    handle: unknown,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    sync: boolean,
  ) {
    this.#handle = handle;
    this.#sync = sync;
  }

  /** Creates a session from a model path (external data next to it) or the model's bytes. */
  static async create(model: string | Uint8Array, options: NativeSessionOptions = {}): Promise<NativeSession> {
    const b = loadBinding();
    const opts: Record<string, unknown> = { customOps: options.customOps ?? true };
    if (options.intraOpNumThreads !== undefined) opts.intraOpNumThreads = options.intraOpNumThreads;
    if (options.interOpNumThreads !== undefined) opts.interOpNumThreads = options.interOpNumThreads;
    if (options.graphOptimizationLevel !== undefined) {
      const level = LEVELS[options.graphOptimizationLevel];
      if (level === undefined) throw new TypeError(`graphOptimizationLevel '${options.graphOptimizationLevel}' is not one of ${Object.keys(LEVELS).join(", ")}`);
      opts.graphOptimizationLevel = level;
    }
    if (options.executionMode !== undefined) opts.sequential = options.executionMode !== "parallel";
    if (options.logSeverityLevel !== undefined) opts.logSeverityLevel = options.logSeverityLevel;
    if (options.extra !== undefined) opts.config = options.extra;
    if (typeof model !== "string" && !(model instanceof Uint8Array)) throw new TypeError("NativeSession.create needs a model path or a Uint8Array");
    const r = await b.createSession(model, opts);
    return new NativeSession(r.handle, Object.freeze([...r.inputNames]), Object.freeze([...r.outputNames]), options.runOnMainThread === true);
  }

  /** Runs the model; `fetches` selects outputs (default: all). Returns onnxruntime-common Tensors. */
  async run(feeds: Record<string, Tensor>, fetches?: readonly string[]): Promise<Record<string, Tensor>> {
    if (this.#released) throw new Error("NativeSession.run: the session has been released");
    const names: string[] = [], types: number[] = [], dims: number[][] = [], data: ArrayBufferView[] = [];
    for (const [name, t] of Object.entries(feeds)) {
      const code = BY_NAME.get(t.type);
      if (code === undefined) throw new TypeError(`NativeSession.run: input '${name}' has tensor type '${t.type}', which is not supported`);
      const d = t.data as unknown;
      if (!ArrayBuffer.isView(d)) throw new TypeError(`NativeSession.run: input '${name}' has no CPU data (location '${t.location}')`);
      names.push(name);
      types.push(code);
      dims.push([...t.dims]);
      data.push(d);
    }
    const outputNames = fetches ? [...fetches] : [...this.outputNames];
    const out = await binding!.run(this.#handle, names, types, dims, data, outputNames, this.#sync);
    const result: Record<string, Tensor> = {};
    out.forEach((o, i) => {
      const t = BY_CODE.get(o.type);
      if (!t) throw new TypeError(`NativeSession.run: output '${outputNames[i]}' has element type ${o.type}, which is not supported`);
      const [typeName, C] = t;
      result[outputNames[i]!] = new Tensor(typeName as "float32", new C(o.data) as Float32Array, o.dims);
    });
    return result;
  }

  /** Frees the session (after any run in flight). Idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    binding!.release(this.#handle);
  }
}
