import type { TensorProto } from "onnx-buf";
import { Codes, VnmcError } from "../diagnostics.js";
import { DataType, elementBits, rawByteLength } from "../ir/dtype.js";
import { ExternalFileTensor, InMemoryTensor, OpaqueTensor, elementCount, type TensorData } from "../ir/tensor.js";
import { checkExternalRange, parseExternalData, resolveExternalPath } from "./external-data.js";

/** Fields a TensorProto carries its payload in; everything else is kept as extras. */
export const PAYLOAD_FIELDS = {
  rawData: new Uint8Array(0),
  floatData: [] as number[],
  int32Data: [] as number[],
  int64Data: [] as bigint[],
  doubleData: [] as number[],
  uint64Data: [] as bigint[],
  stringData: [] as Uint8Array<ArrayBuffer>[],
  externalData: [],
  dataLocation: 0,
};

function dimsOf(t: TensorProto): number[] {
  return t.dims.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new VnmcError(Codes.BAD_TENSOR, `Tensor '${t.name}' has an invalid dimension ${d}; the model is corrupt.`);
    }
    return n;
  });
}

/** Pack typed-field values into ONNX raw little-endian bytes. */
function typedToRaw(t: TensorProto, dt: number, count: number): Uint8Array | undefined {
  const bits = elementBits(dt);
  if (bits === undefined) return undefined;
  const out = new Uint8Array(Math.ceil((bits * count) / 8));
  const view = new DataView(out.buffer);
  const need = (have: number, perElem: number) => {
    if (have !== Math.ceil(count / perElem)) {
      throw new VnmcError(Codes.BAD_TENSOR, `Tensor '${t.name}' holds ${have} values for ${count} elements; the model is corrupt.`);
    }
  };
  switch (dt) {
    case DataType.FLOAT:
      need(t.floatData.length, 1);
      t.floatData.forEach((v, i) => view.setFloat32(i * 4, v, true));
      return out;
    case DataType.COMPLEX64:
      need(t.floatData.length / 2, 1);
      t.floatData.forEach((v, i) => view.setFloat32(i * 4, v, true));
      return out;
    case DataType.DOUBLE:
      need(t.doubleData.length, 1);
      t.doubleData.forEach((v, i) => view.setFloat64(i * 8, v, true));
      return out;
    case DataType.COMPLEX128:
      need(t.doubleData.length / 2, 1);
      t.doubleData.forEach((v, i) => view.setFloat64(i * 8, v, true));
      return out;
    case DataType.INT64:
      need(t.int64Data.length, 1);
      t.int64Data.forEach((v, i) => view.setBigInt64(i * 8, v, true));
      return out;
    case DataType.UINT32:
      need(t.uint64Data.length, 1);
      t.uint64Data.forEach((v, i) => view.setUint32(i * 4, Number(v), true));
      return out;
    case DataType.UINT64:
      need(t.uint64Data.length, 1);
      t.uint64Data.forEach((v, i) => view.setBigUint64(i * 8, v, true));
      return out;
    case DataType.INT32:
      need(t.int32Data.length, 1);
      t.int32Data.forEach((v, i) => view.setInt32(i * 4, v, true));
      return out;
    default:
      if (bits === 4) {
        // int4/uint4/float4: two elements per int32_data entry, low nibble first
        need(t.int32Data.length, 2);
        t.int32Data.forEach((v, i) => (out[i] = v & 0xff));
        return out;
      }
      need(t.int32Data.length, 1);
      if (bits === 8) t.int32Data.forEach((v, i) => view.setUint8(i, v & 0xff));
      else if (bits === 16) t.int32Data.forEach((v, i) => view.setUint16(i * 2, v & 0xffff, true));
      else return undefined;
      return out;
  }
}

export interface TensorSource {
  /** Folder of the model file, for external data; undefined when the model came from bytes. */
  modelDir: string | undefined;
}

/** Turn a TensorProto into lazily read tensor data, validating sizes and external data. */
export function tensorDataFromProto(t: TensorProto, src: TensorSource): TensorData {
  const dims = dimsOf(t);
  const dt = t.dataType;
  const count = elementCount(dims);
  const expected = rawByteLength(dt, count);
  if (t.dataLocation === 1 /* EXTERNAL */) {
    if (src.modelDir === undefined) {
      throw new VnmcError(Codes.EXTERNAL_DATA_MISSING, `Tensor '${t.name}' uses external data, which needs the model to be read from a file path.`);
    }
    const ref = parseExternalData(t.name, t.externalData);
    const path = resolveExternalPath(src.modelDir, t.name, ref.location);
    const length = checkExternalRange(t.name, path, ref, expected);
    return new ExternalFileTensor(dt, dims, path, ref.offset, length);
  }
  if (dt === DataType.STRING || expected === undefined || t.segment !== undefined) {
    return new OpaqueTensor(dt, dims, t);
  }
  if (t.rawData.byteLength > 0 || expected === 0) {
    if (t.rawData.byteLength !== expected) {
      throw new VnmcError(
        Codes.BAD_TENSOR,
        `Tensor '${t.name}' has ${t.rawData.byteLength} bytes of data but its shape [${dims}] and type need ${expected}; the model is corrupt.`,
      );
    }
    return new InMemoryTensor(dt, dims, t.rawData);
  }
  const raw = typedToRaw(t, dt, count);
  if (raw === undefined) return new OpaqueTensor(dt, dims, t);
  return new InMemoryTensor(dt, dims, raw);
}
