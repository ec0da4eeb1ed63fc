/**
 * Reading single tensors from calibration files: ONNX TensorProto files (`input_0.pb`, the ONNX
 * test-data layout) and NumPy .npy files, and the arrays of a .npz archive.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { TensorProtoSchema } from "onnx-buf";
import { DataType } from "../ir/dtype.js";
import { OpaqueTensor } from "../ir/tensor.js";
import { tensorDataFromProto } from "../serde/tensor-proto.js";
import { FormatError, parseNpy, type RawArray } from "./npy.js";
import { listZip, readZipEntry } from "./zip.js";

/** One array of a calibration sample, before it is matched to a model input. */
export interface NamedArray extends RawArray {
  /** The name the file gives it (TensorProto name, .npy file stem, .npz member), "" when none. */
  name: string;
  /** Where it came from, for messages: a path, or `archive.npz:member`. */
  origin: string;
  /** Position among the sample's arrays (input_<i>.pb's i, or the order of files/members). */
  index: number;
}

function readBytes(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A TensorProto file. Throws FormatError when it does not decode to a tensor with data. */
export function readTensorProtoFile(path: string): RawArray & { name: string } {
  const bytes = readBytes(path);
  let proto;
  try {
    proto = fromBinary(TensorProtoSchema, bytes);
  } catch (e) {
    throw new FormatError(`it does not decode as an ONNX TensorProto (${(e as Error).message.split("\n")[0]})`);
  }
  if (proto.dataType === DataType.UNDEFINED) throw new FormatError("it does not decode as an ONNX TensorProto (no data type)");
  let data;
  try {
    data = tensorDataFromProto(proto, { modelDir: dirname(path) });
  } catch (e) {
    throw new FormatError(`its data is inconsistent: ${(e as Error).message.replace(/; the model is corrupt\.?$/, "")}`);
  }
  if (data instanceof OpaqueTensor) throw new FormatError("it holds a string or segmented tensor, which cannot be a calibration input");
  let raw: Uint8Array;
  try {
    raw = data.read();
  } catch (e) {
    throw new FormatError(`its data cannot be read (${(e as Error).message})`);
  }
  return { name: proto.name, dataType: data.dataType, dims: [...data.dims], data: raw };
}

export function readNpyFile(path: string): RawArray {
  return parseNpy(readBytes(path));
}

/** Every array of a .npz archive, in the archive's order, named after its member without `.npy`. */
export function readNpzFile(path: string): Array<RawArray & { name: string }> {
  const bytes = readBytes(path);
  const out: Array<RawArray & { name: string }> = [];
  for (const e of listZip(bytes)) {
    if (e.name.endsWith("/")) continue;
    if (!e.name.endsWith(".npy")) throw new FormatError(`its member '${e.name}' is not a .npy array`);
    const member = readZipEntry(bytes, e);
    let arr: RawArray;
    try {
      arr = parseNpy(member);
    } catch (err) {
      if (err instanceof FormatError) throw new FormatError(`its member '${e.name}' is not a valid array: ${err.message}`);
      throw err;
    }
    out.push({ ...arr, name: e.name.slice(0, -4) });
  }
  return out;
}
