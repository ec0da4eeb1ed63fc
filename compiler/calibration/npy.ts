/**
 * A reader for NumPy's .npy format (versions 1.0, 2.0 and 3.0), enough for calibration inputs:
 * little-endian (or single-byte) numeric and bool arrays in C order. Anything else is refused with a
 * message that says how to convert the array.
 */
import { DataType, dataTypeName } from "../ir/dtype.js";

/** An array read from a file: raw little-endian bytes of `dataType`, row-major. */
export interface RawArray {
  dataType: number;
  dims: number[];
  /** Exactly elementCount(dims) · element size bytes. */
  data: Uint8Array;
}

/** A file that is not what it should be; the caller turns it into a user-facing error. */
export class FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FormatError";
  }
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** NumPy type codes (without the byte-order character) and the ONNX types they map to. */
const DESCR: Record<string, { dataType: number; size: number }> = {
  f4: { dataType: DataType.FLOAT, size: 4 },
  f2: { dataType: DataType.FLOAT16, size: 2 },
  f8: { dataType: DataType.DOUBLE, size: 8 },
  i8: { dataType: DataType.INT64, size: 8 },
  i4: { dataType: DataType.INT32, size: 4 },
  i2: { dataType: DataType.INT16, size: 2 },
  i1: { dataType: DataType.INT8, size: 1 },
  u8: { dataType: DataType.UINT64, size: 8 },
  u4: { dataType: DataType.UINT32, size: 4 },
  u2: { dataType: DataType.UINT16, size: 2 },
  u1: { dataType: DataType.UINT8, size: 1 },
  b1: { dataType: DataType.BOOL, size: 1 },
};

/** The NumPy dtype string of an ONNX type, for messages ("int64" → "np.int64"). */
export function numpyName(dataType: number): string {
  return dataType === DataType.FLOAT ? "float32" : dataType === DataType.DOUBLE ? "float64" : dataTypeName(dataType);
}

/** Parses a .npy file held in memory. Throws FormatError on anything malformed or unsupported. */
export function parseNpy(bytes: Uint8Array): RawArray {
  if (bytes.byteLength < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new FormatError("it is not a .npy file (no \\x93NUMPY magic)");
  }
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerStart: number;
  let headerLen: number;
  if (major === 1) {
    headerStart = 10;
    headerLen = view.getUint16(8, true);
  } else if (major === 2 || major === 3) {
    if (bytes.byteLength < 12) throw new FormatError("the file is truncated inside its header");
    headerStart = 12;
    headerLen = view.getUint32(8, true);
  } else {
    throw new FormatError(`it uses .npy format version ${major}.${bytes[7]}, which vnmc does not read (versions 1 to 3 are read)`);
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.byteLength) throw new FormatError("the file is truncated inside its header");
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(headerStart, dataStart));

  const descrMatch = /['"]descr['"]\s*:\s*(['"])([^'"]*)\1/.exec(header);
  if (!descrMatch) {
    throw new FormatError(/['"]descr['"]\s*:\s*\[/.test(header)
      ? "it holds a structured (record) array; save a plain numeric array instead"
      : "its header has no dtype ('descr')");
  }
  const descr = descrMatch[2]!;
  const order = descr[0]!;
  const code = "<>|=".includes(order) ? descr.slice(1) : descr;
  const type = DESCR[code];
  if (!type) throw new FormatError(`its dtype '${descr}' is not supported (float32, float16, float64, int64, int32, int16, int8, uint8 and bool are)`);
  if (order === ">" && type.size > 1) throw new FormatError(`it is big-endian ('${descr}'); save it little-endian, e.g. arr.astype(arr.dtype.newbyteorder('<'))`);

  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header);
  if (!fortran) throw new FormatError("its header has no 'fortran_order'");
  if (fortran[1] === "True") throw new FormatError("it is stored in Fortran order; save it in C order, e.g. np.save(f, np.ascontiguousarray(arr))");

  const shapeMatch = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header);
  if (!shapeMatch) throw new FormatError("its header has no 'shape'");
  const dims = shapeMatch[1]!
    .split(",")
    .map((s) => s.trim().replace(/L$/, ""))
    .filter((s) => s !== "")
    .map((s) => {
      if (!/^\d+$/.test(s)) throw new FormatError(`its shape (${shapeMatch[1]}) is not a tuple of non-negative integers`);
      return Number(s);
    });
  const count = dims.reduce((a, b) => a * b, 1);
  const need = count * type.size;
  const have = bytes.byteLength - dataStart;
  if (have < need) throw new FormatError(`it is truncated: shape (${dims.join(", ")}) needs ${need} bytes of data, the file has ${have}`);
  if (have > need) throw new FormatError(`it has ${have - need} bytes after the data that its shape (${dims.join(", ")}) does not account for`);
  return { dataType: type.dataType, dims, data: bytes.subarray(dataStart, dataStart + need) };
}
