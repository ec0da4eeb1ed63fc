import { create, toBinary } from "@bufbuild/protobuf";
import { closeSync, existsSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import {
  type AttributeProto,
  AttributeProtoSchema,
  AttributeProto_AttributeType as AT,
  type FunctionProto,
  FunctionProtoSchema,
  type GraphProto,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProtoSchema,
  type TypeProto,
  TypeProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from "onnx-buf";
import { Codes, VnmcError } from "../diagnostics.js";
import type { Attribute, AttrTensor } from "../ir/attribute.js";
import type { Graph } from "../ir/graph.js";
import type { FunctionDef, Model, OpsetImport } from "../ir/model.js";
import type { Node } from "../ir/node.js";
import { OpaqueTensor, type TensorData } from "../ir/tensor.js";
import type { Value, ValueType } from "../ir/value.js";
import { copyMessage } from "./message-copy.js";
import { PAYLOAD_FIELDS } from "./tensor-proto.js";

/** Protobuf cannot hold a message of 2 GB or more. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;

export interface WriteOptions {
  /** Put initializers in a data file next to the model (`<model file>.data`). */
  externalData?: boolean;
  /** Tensors smaller than this stay embedded even with external data (default 1024 bytes). */
  externalThreshold?: number;
  /**
   * Largest total of weight bytes embedded in the .onnx file; above it external data is forced.
   * Default: protobuf's 2 GB limit less a margin for the graph. (Lowered in tests.)
   */
  embedLimit?: number;
  /** Called after each tensor is written (for progress). */
  onTensor?: (name: string, bytes: number) => void;
}

export interface WriteResult {
  path: string;
  bytes: number;
  dataPath?: string;
  dataBytes: number;
  /** True when the model needed external data although it was not asked for. */
  externalForced: boolean;
}

/** Writes tensor payloads to the external data file, aligned so runtimes can memory-map them. */
class DataFileWriter {
  private offset = 0;
  private readonly fd: number;
  constructor(readonly tmpPath: string, readonly location: string) {
    this.fd = openSync(tmpPath, "w");
  }
  append(bytes: Uint8Array): { offset: number; length: number } {
    const align = bytes.byteLength >= 1 << 20 ? 4096 : 64;
    const pad = (align - (this.offset % align)) % align;
    if (pad) writeSync(this.fd, new Uint8Array(pad), 0, pad, this.offset);
    const at = this.offset + pad;
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(this.fd, bytes, done, bytes.byteLength - done, at + done);
    this.offset = at + bytes.byteLength;
    return { offset: at, length: bytes.byteLength };
  }
  get size(): number {
    return this.offset;
  }
  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.closed = true;
  }
  private closed = false;
  closeQuietly(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch {
      // already failing: the original error is what matters
    }
  }
}

/** Total raw bytes of all initializers, to decide whether the model fits in one protobuf. */
function initializerBytes(model: Model): number {
  let total = 0;
  for (const g of model.graph.allGraphs()) for (const v of g.initializers) total += v.initializer!.byteLength;
  return total;
}

/**
 * Write a model atomically: everything goes to temporary files that are renamed into place only when
 * complete, so an error never leaves a partial output. Tensors are read and written one at a time.
 */
export function writeModelFile(model: Model, path: string, opts: WriteOptions = {}): WriteResult {
  return writeStaged(model, path, opts, (enc) => enc.fillSync()) as WriteResult;
}

/**
 * Like writeModelFile, but lazy tensors that can be prepared in the background (pruning on worker
 * threads) are started a few tensors ahead of the one being written, so the cores stay busy while the
 * number of weights in memory stays bounded.
 */
export async function writeModelFileAsync(model: Model, path: string, opts: WriteOptions & { lookahead?: number } = {}): Promise<WriteResult> {
  return writeStaged(model, path, opts, (enc) => enc.fill(opts.lookahead ?? 3));
}

/** Shared by both writers: the payload fill is synchronous or asynchronous, the rest is the same. */
function writeStaged(model: Model, path: string, opts: WriteOptions, fill: (enc: ModelEncoder) => void | Promise<void>): WriteResult | Promise<WriteResult> {
  const abs = resolve(path);
  const forced = !opts.externalData && initializerBytes(model) > (opts.embedLimit ?? PROTOBUF_LIMIT - (64 << 20));
  const external = opts.externalData || forced;
  const dataName = `${basename(abs)}.data`;
  const dataPath = resolve(dirname(abs), dataName);
  const suffix = `.tmp-${process.pid}`;
  const data = external ? new DataFileWriter(dataPath + suffix, dataName) : undefined;
  const tmpModel = abs + suffix;
  const fail = (e: unknown): never => {
    data?.closeQuietly();
    for (const p of [tmpModel, data?.tmpPath]) if (p && existsSync(p)) unlinkSync(p);
    if (e instanceof VnmcError) throw e;
    throw new VnmcError(Codes.WRITE_FAILED, `Could not write '${path}': ${(e as Error).message}.`);
  };
  const finish = (proto: ModelProto): WriteResult => {
    const bytes = toBinary(ModelProtoSchema, proto);
    const fd = openSync(tmpModel, "w");
    try {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    data?.close();
    if (data) renameSync(data.tmpPath, dataPath);
    else if (existsSync(dataPath)) {
      // A stale data file from an earlier external write would be misleading next to an embedded model.
      unlinkSync(dataPath);
    }
    renameSync(tmpModel, abs);
    return { path: abs, bytes: bytes.byteLength, dataPath: data ? dataPath : undefined, dataBytes: data?.size ?? 0, externalForced: forced };
  };
  try {
    const enc = new ModelEncoder(data, opts);
    const proto = enc.model(model);
    const filled = fill(enc);
    if (filled instanceof Promise) return filled.then(() => finish(proto)).catch(fail);
    return finish(proto);
  } catch (e) {
    return fail(e);
  }
}

/** Encode a model to bytes with all data embedded (for in-memory use, e.g. onnxruntime sessions). */
export function encodeModel(model: Model): Uint8Array {
  if (initializerBytes(model) > PROTOBUF_LIMIT - (64 << 20)) {
    throw new VnmcError(Codes.WRITE_FAILED, "The model is over 2 GB and cannot be held in one protobuf; write it with external data.");
  }
  const enc = new ModelEncoder(undefined, {});
  const proto = enc.model(model);
  enc.fillSync();
  return toBinary(ModelProtoSchema, proto);
}

interface PendingTensor {
  proto: TensorProto;
  data: TensorData;
  mayBeExternal: boolean;
}

class ModelEncoder {
  constructor(private readonly data: DataFileWriter | undefined, private readonly opts: WriteOptions) {}

  model(m: Model): ModelProto {
    const base = (m.extras as ModelProto | undefined) ?? create(ModelProtoSchema);
    return copyMessage(base, {
      irVersion: BigInt(m.irVersion),
      opsetImport: opsets(m.opsetImports),
      producerName: m.producerName,
      producerVersion: m.producerVersion,
      metadataProps: m.metadata.map(([key, value]) => create(StringStringEntryProtoSchema, { key, value })),
      graph: this.graph(m.graph, true),
      functions: m.functions.map((f) => this.function(f)),
    });
  }

  private function(f: FunctionDef): FunctionProto {
    const base = (f.extras as FunctionProto | undefined) ?? create(FunctionProtoSchema);
    return copyMessage(base, {
      domain: f.domain,
      name: f.name,
      overload: f.overload,
      attribute: f.attributeNames,
      attributeProto: f.attributeProtos as AttributeProto[],
      opsetImport: opsets(f.opsetImports),
      input: f.body.inputs.map((v) => v.name),
      output: f.body.outputs.map((v) => v.name),
      node: f.body.nodes.map((n) => this.node(n)),
    });
  }

  private graph(g: Graph, top: boolean): GraphProto {
    const base = (g.extras as GraphProto | undefined) ?? create(GraphProtoSchema);
    return copyMessage(base, {
      name: g.name,
      input: g.inputs.map((v) => valueInfo(v)),
      output: g.outputs.map((v) => valueInfo(v)),
      valueInfo: g.valueInfos.map((v) => valueInfo(v)),
      initializer: g.initializers.map((v) => this.tensor(v.name, v.initializer!, v.initializerExtras, top)),
      node: g.nodes.map((n) => this.node(n)),
    });
  }

  private node(n: Node): NodeProto {
    const base = (n.extras as NodeProto | undefined) ?? create(NodeProtoSchema);
    return copyMessage(base, {
      opType: n.opType,
      domain: n.domain,
      name: n.name,
      overload: n.overload,
      input: n.inputs.map((v) => v?.name ?? ""),
      output: n.outputs.map((v) => (v.unnamedOutput ? "" : v.name)),
      attribute: n.attributes.map((a) => this.attribute(a)),
    });
  }

  private attribute(a: Attribute): AttributeProto {
    const base = (a.extras as AttributeProto | undefined) ?? create(AttributeProtoSchema);
    const v = a.value;
    const out = copyMessage(base, { name: a.name });
    switch (v.kind) {
      case "ref": return Object.assign(out, { refAttrName: v.refAttrName, type: v.type });
      case "float": return Object.assign(out, { type: AT.FLOAT, f: v.value });
      case "int": return Object.assign(out, { type: AT.INT, i: v.value });
      case "string": return Object.assign(out, { type: AT.STRING, s: v.value });
      case "tensor": return Object.assign(out, { type: AT.TENSOR, t: this.attrTensor(v.value) });
      case "graph": return Object.assign(out, { type: AT.GRAPH, g: this.graph(v.value, false) });
      case "floats": return Object.assign(out, { type: AT.FLOATS, floats: v.value });
      case "ints": return Object.assign(out, { type: AT.INTS, ints: v.value });
      case "strings": return Object.assign(out, { type: AT.STRINGS, strings: v.value });
      case "tensors": return Object.assign(out, { type: AT.TENSORS, tensors: v.value.map((t) => this.attrTensor(t)) });
      case "graphs": return Object.assign(out, { type: AT.GRAPHS, graphs: v.value.map((g) => this.graph(g, false)) });
      case "opaque": return v.value as AttributeProto;
    }
  }

  private attrTensor(t: AttrTensor): TensorProto {
    return this.tensor(t.name, t.data, t.extras, false);
  }

  /** Tensors of the main graph and subgraphs may go external; attribute tensors stay embedded. */
  private tensor(name: string, data: TensorData, extras: unknown, mayBeExternal: boolean): TensorProto {
    if (data instanceof OpaqueTensor) {
      const original = data.payload as TensorProto;
      return copyMessage(original, { name });
    }
    const base = (extras as TensorProto | undefined) ?? create(TensorProtoSchema);
    const out = copyMessage(base, { ...PAYLOAD_FIELDS, name, dims: data.dims.map(BigInt), dataType: data.dataType });
    // The payload is filled in afterwards, in file order, so large data is read one tensor at a time.
    this.pending.push({ proto: out, data, mayBeExternal });
    return out;
  }

  readonly pending: PendingTensor[] = [];

  fillSync(): void {
    for (const p of this.pending) this.fillOne(p);
  }

  async fill(lookahead: number): Promise<void> {
    const started = new Set<number>();
    const start = (i: number) => {
      const p = this.pending[i];
      if (!p || started.has(i)) return;
      started.add(i);
      // Errors surface when the tensor itself is awaited; this only starts the work.
      p.data.prepare?.().catch(() => {});
    };
    for (let i = 0; i < this.pending.length; i++) {
      // Keep `lookahead` jobs beyond the current one going; tensors of one group share a job.
      const groups = new Set<unknown>();
      for (let j = i; j < this.pending.length && groups.size <= lookahead; j++) {
        const d = this.pending[j]!.data;
        if (!d.prepare) continue;
        groups.add(d.prepareGroup ?? d);
        if (groups.size <= lookahead) start(j);
      }
      await this.pending[i]!.data.prepare?.();
      this.fillOne(this.pending[i]!);
    }
  }

  private fillOne({ proto: out, data, mayBeExternal }: PendingTensor): void {
    const name = out.name;
    const threshold = this.opts.externalThreshold ?? 1024;
    const bytes = data.read();
    if (this.data && mayBeExternal && bytes.byteLength >= threshold) {
      const { offset, length } = this.data.append(bytes);
      out.dataLocation = 1;
      out.externalData = [
        create(StringStringEntryProtoSchema, { key: "location", value: this.data.location }),
        create(StringStringEntryProtoSchema, { key: "offset", value: String(offset) }),
        create(StringStringEntryProtoSchema, { key: "length", value: String(length) }),
      ];
    } else {
      // Copy: the source may be a view of a larger buffer that must not be kept alive.
      out.rawData = bytes.slice() as Uint8Array<ArrayBuffer>;
    }
    this.opts.onTensor?.(name, bytes.byteLength);
  }
}

function opsets(list: OpsetImport[]) {
  return list.map((o) => create(OperatorSetIdProtoSchema, { domain: o.domain, version: BigInt(o.version) }));
}

function valueInfo(v: Value): ValueInfoProto {
  const base = (v.infoExtras as ValueInfoProto | undefined) ?? create(ValueInfoProtoSchema);
  return copyMessage(base, { name: v.name, type: typeProto(v.type) });
}

/** The original TypeProto when the IR's view of it is unchanged; a fresh tensor type otherwise. */
function typeProto(t: ValueType | undefined): TypeProto | undefined {
  if (!t) return undefined;
  const original = t.opaque as TypeProto | undefined;
  if (original && matches(original, t)) return original;
  if (t.elemType === undefined) return original;
  const dims = (t.shape ?? []).map((d) =>
    typeof d === "number"
      ? { value: { case: "dimValue" as const, value: BigInt(d) } }
      : typeof d === "string"
        ? { value: { case: "dimParam" as const, value: d } }
        : {},
  );
  return create(TypeProtoSchema, {
    value: { case: "tensorType", value: { elemType: t.elemType, shape: t.shape ? { dim: dims } : undefined } },
  });
}

function matches(p: TypeProto, t: ValueType): boolean {
  if (p.value.case !== "tensorType") return t.elemType === undefined;
  const tt = p.value.value;
  if (tt.elemType !== t.elemType) return false;
  if (!tt.shape) return t.shape === undefined;
  if (!t.shape || t.shape.length !== tt.shape.dim.length) return false;
  return tt.shape.dim.every((d, i) => {
    const s = t.shape![i];
    if (d.value.case === "dimValue") return Number(d.value.value) === s;
    if (d.value.case === "dimParam") return d.value.value === s;
    return s === null;
  });
}
