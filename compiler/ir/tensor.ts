import { closeSync, openSync, readSync } from "node:fs";
import { type DataType, rawByteLength } from "./dtype.js";

/**
 * Tensor data, held lazily: multi-GB weights are read only when a pass or the writer asks, so a model
 * larger than memory can be compiled tensor by tensor.
 */
export interface TensorData {
  readonly dataType: DataType;
  readonly dims: readonly number[];
  /** Size in bytes of the raw little-endian data (ONNX raw_data layout). */
  readonly byteLength: number;
  /** The raw little-endian bytes. May allocate; callers drop the result when done. */
  read(): Uint8Array;
  /**
   * Optional: start computing the data in the background (e.g. pruning on a worker thread); `read()`
   * after the promise resolves is cheap. Idempotent.
   */
  prepare?(): Promise<void>;
  /** Tensors prepared by one shared job (e.g. the four packed parts of a weight) share this key. */
  readonly prepareGroup?: unknown;
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

function expectedBytes(dataType: DataType, dims: readonly number[]): number {
  const len = rawByteLength(dataType, elementCount(dims));
  if (len === undefined) throw new Error(`tensor data type ${dataType} has no fixed-size raw layout`);
  return len;
}

/** Bytes already in memory (embedded raw_data, or computed). */
export class InMemoryTensor implements TensorData {
  readonly byteLength: number;
  constructor(readonly dataType: DataType, readonly dims: readonly number[], private readonly bytes: Uint8Array) {
    this.byteLength = bytes.byteLength;
  }
  read(): Uint8Array {
    return this.bytes;
  }
}

/** A byte range of an external data file, read on demand and never cached. */
export class ExternalFileTensor implements TensorData {
  readonly byteLength: number;
  constructor(
    readonly dataType: DataType,
    readonly dims: readonly number[],
    readonly path: string,
    readonly offset: number,
    length: number,
  ) {
    this.byteLength = length;
  }
  read(): Uint8Array {
    return this.readInto(new Uint8Array(this.byteLength));
  }

  /** Read into a caller's buffer (of at least byteLength bytes); returns the filled view. */
  readInto(buffer: Uint8Array): Uint8Array {
    const out = buffer.subarray(0, this.byteLength);
    const fd = openSync(this.path, "r");
    try {
      let done = 0;
      while (done < out.byteLength) {
        const n = readSync(fd, out, done, out.byteLength - done, this.offset + done);
        if (n <= 0) throw new Error(`external data file ${this.path} ended early`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    return out;
  }
}

/** Data computed on demand by a thunk (e.g. packed weights), so it exists only while it is written. */
export class LazyTensor implements TensorData {
  readonly byteLength: number;
  readonly prepare?: () => Promise<void>;
  constructor(
    readonly dataType: DataType,
    readonly dims: readonly number[],
    private readonly compute: () => Uint8Array,
    prepare?: () => Promise<void>,
    readonly prepareGroup?: unknown,
  ) {
    this.byteLength = expectedBytes(dataType, dims);
    if (prepare) this.prepare = prepare;
  }
  read(): Uint8Array {
    const bytes = this.compute();
    if (bytes.byteLength !== this.byteLength) {
      throw new Error(`lazy tensor produced ${bytes.byteLength} bytes, expected ${this.byteLength}`);
    }
    return bytes;
  }
}

/**
 * A tensor whose payload cannot be expressed as raw bytes (string tensors): the serializer copies the
 * opaque payload as it was read.
 */
export class OpaqueTensor implements TensorData {
  readonly byteLength = 0;
  constructor(readonly dataType: DataType, readonly dims: readonly number[], readonly payload: unknown) {}
  read(): Uint8Array {
    throw new Error("an opaque (string) tensor has no raw bytes");
  }
}

export function tensorFromTyped(
  dataType: DataType,
  dims: readonly number[],
  data: Float32Array | Int32Array | Uint8Array | Uint16Array | BigInt64Array | Float64Array,
): InMemoryTensor {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const need = expectedBytes(dataType, dims);
  if (need !== bytes.byteLength) throw new Error(`tensor of dims [${dims}] needs ${need} bytes, got ${bytes.byteLength}`);
  return new InMemoryTensor(dataType, dims, bytes);
}
