/**
 * A minimal reader for ZIP archives held in memory, as NumPy's .npz files are: the central directory
 * (with ZIP64 extensions, which np.savez writes), stored and deflated entries. Nothing is trusted:
 * every offset and size is checked, inflation is capped at the declared size, and the CRC-32 is
 * verified where Node provides it.
 */
import * as zlib from "node:zlib";
import { FormatError } from "./npy.js";

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const ZIP64_EOCD = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError("a ZIP64 size or offset is out of range");
  return Number(v);
}

/** The entries listed in the archive's central directory, in directory order. */
export function listZip(bytes: Uint8Array): ZipEntry[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength;
  // The end-of-central-directory record is the last 22 bytes plus a comment of up to 65535 bytes.
  let eocd = -1;
  for (let i = n - 22; i >= Math.max(0, n - 22 - 65535); i--) {
    if (view.getUint32(i, true) === EOCD && i + 22 + view.getUint16(i + 20, true) === n) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new FormatError("it is not a ZIP archive, or it is truncated (no end-of-central-directory record)");
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || view.getUint32(loc, true) !== ZIP64_LOCATOR) throw new FormatError("its ZIP64 end-of-central-directory locator is missing");
    const rec = u64(view, loc + 8);
    if (rec + 56 > n || view.getUint32(rec, true) !== ZIP64_EOCD) throw new FormatError("its ZIP64 end-of-central-directory record is missing");
    count = u64(view, rec + 32);
    cdSize = u64(view, rec + 40);
    cdOffset = u64(view, rec + 48);
  }
  if (cdOffset + cdSize > n) throw new FormatError("it is truncated (the central directory lies past the end of the file)");
  const entries: ZipEntry[] = [];
  let at = cdOffset;
  for (let e = 0; e < count; e++) {
    if (at + 46 > n || view.getUint32(at, true) !== CENTRAL) throw new FormatError("its central directory is corrupt");
    const flags = view.getUint16(at + 8, true);
    const method = view.getUint16(at + 10, true);
    const crc32 = view.getUint32(at + 16, true);
    let compressedSize = view.getUint32(at + 20, true);
    let size = view.getUint32(at + 24, true);
    const nameLen = view.getUint16(at + 28, true);
    const extraLen = view.getUint16(at + 30, true);
    const commentLen = view.getUint16(at + 32, true);
    let localHeaderOffset = view.getUint32(at + 42, true);
    if (at + 46 + nameLen + extraLen + commentLen > n) throw new FormatError("its central directory is corrupt");
    const name = new TextDecoder("utf-8").decode(bytes.subarray(at + 46, at + 46 + nameLen));
    if (flags & 1) throw new FormatError(`its entry '${name}' is encrypted`);
    // ZIP64 extended information: the 64-bit values of the fields that hold 0xFFFFFFFF, in this order.
    let x = at + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = view.getUint16(x, true);
      const len = view.getUint16(x + 2, true);
      if (id === 0x0001) {
        let p = x + 4;
        const take = () => {
          if (p + 8 > x + 4 + len) throw new FormatError(`the ZIP64 field of entry '${name}' is too short`);
          const v = u64(view, p);
          p += 8;
          return v;
        };
        if (size === 0xffffffff) size = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
      }
      x += 4 + len;
    }
    entries.push({ name, method, compressedSize, size, crc32, localHeaderOffset });
    at += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** The uncompressed bytes of one entry. */
export function readZipEntry(bytes: Uint8Array, e: ZipEntry): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = e.localHeaderOffset;
  if (at + 30 > bytes.byteLength || view.getUint32(at, true) !== LOCAL) throw new FormatError(`the local header of entry '${e.name}' is missing`);
  const start = at + 30 + view.getUint16(at + 26, true) + view.getUint16(at + 28, true);
  const end = start + e.compressedSize;
  if (end > bytes.byteLength) throw new FormatError(`it is truncated inside entry '${e.name}'`);
  const raw = bytes.subarray(start, end);
  let out: Uint8Array;
  if (e.method === 0) {
    out = raw;
  } else if (e.method === 8) {
    try {
      const b = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
      // A plain Uint8Array view (a Buffer's slice() would not copy).
      out = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch (err) {
      throw new FormatError(`entry '${e.name}' does not inflate (${(err as Error).message})`);
    }
  } else {
    throw new FormatError(`entry '${e.name}' uses ZIP compression method ${e.method}; only stored and deflated entries are read (np.savez and np.savez_compressed write those)`);
  }
  if (out.byteLength !== e.size) throw new FormatError(`entry '${e.name}' holds ${out.byteLength} bytes, its directory says ${e.size}`);
  const crc = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
  if (crc && crc(out) >>> 0 !== e.crc32 >>> 0) throw new FormatError(`entry '${e.name}' fails its CRC-32 check (the file is corrupt)`);
  return out;
}
