/**
 * Hand-built .npy and .npz files for tests, written from the format descriptions (NumPy's NEP 1 and
 * the ZIP application note) without any code of vnmc's readers: header dicts, padding, local
 * headers, central directory, ZIP64 extras and CRC-32 are all spelled out here.
 */
import { deflateRawSync } from "node:zlib";

export interface NpyOptions {
  version?: 1 | 2 | 3;
  fortran?: boolean;
}

/** A .npy file: magic, version, header length, a Python dict literal padded to 64 bytes, data. */
export function npyBytes(descr: string, shape: number[], data: Uint8Array | ArrayBufferView, opts: NpyOptions = {}): Uint8Array {
  const version = opts.version ?? 1;
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '${descr}', 'fortran_order': ${opts.fortran ? "True" : "False"}, 'shape': ${shapeText}, }`;
  const pre = version === 1 ? 10 : 12;
  const total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  const header = dict.padEnd(total - pre - 1, " ") + "\n";
  const body = data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(total + body.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  out.set(new TextEncoder().encode(header), pre);
  out.set(body, total);
  return out;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface ZipOptions {
  /** Deflate the entries (np.savez_compressed) instead of storing them (np.savez). */
  deflate?: boolean;
  /** Write ZIP64 extra fields with 0xFFFFFFFF sizes, as np.savez does with force_zip64. */
  zip64?: boolean;
  /** Overwrite the CRC-32 of every entry (to make a corrupt file). */
  badCrc?: boolean;
}

/** A ZIP archive of `entries` (name → bytes). */
export function zipBytes(entries: Array<[string, Uint8Array]>, opts: ZipOptions = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBytes = new TextEncoder().encode(name);
    const body = opts.deflate ? new Uint8Array(deflateRawSync(data)) : data;
    const crc = opts.badCrc ? (crc32(data) ^ 1) >>> 0 : crc32(data);
    const method = opts.deflate ? 8 : 0;
    const extra = opts.zip64 ? new Uint8Array(20) : new Uint8Array(0);
    if (opts.zip64) {
      const x = new DataView(extra.buffer);
      x.setUint16(0, 1, true);
      x.setUint16(2, 16, true);
      x.setBigUint64(4, BigInt(data.byteLength), true);
      x.setBigUint64(12, BigInt(body.byteLength), true);
    }
    const local = new Uint8Array(30 + nameBytes.length + extra.length);
    const l = new DataView(local.buffer);
    l.setUint32(0, 0x04034b50, true);
    l.setUint16(4, opts.zip64 ? 45 : 20, true);
    l.setUint16(8, method, true);
    l.setUint32(14, crc, true);
    l.setUint32(18, opts.zip64 ? 0xffffffff : body.byteLength, true);
    l.setUint32(22, opts.zip64 ? 0xffffffff : data.byteLength, true);
    l.setUint16(26, nameBytes.length, true);
    l.setUint16(28, extra.length, true);
    local.set(nameBytes, 30);
    local.set(extra, 30 + nameBytes.length);
    parts.push(local, body);

    const cextra = opts.zip64 ? new Uint8Array(28) : new Uint8Array(0);
    if (opts.zip64) {
      const x = new DataView(cextra.buffer);
      x.setUint16(0, 1, true);
      x.setUint16(2, 24, true);
      x.setBigUint64(4, BigInt(data.byteLength), true);
      x.setBigUint64(12, BigInt(body.byteLength), true);
      x.setBigUint64(20, BigInt(offset), true);
    }
    const c = new Uint8Array(46 + nameBytes.length + cextra.length);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, opts.zip64 ? 45 : 20, true);
    cv.setUint16(10, method, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, opts.zip64 ? 0xffffffff : body.byteLength, true);
    cv.setUint32(24, opts.zip64 ? 0xffffffff : data.byteLength, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint16(30, cextra.length, true);
    cv.setUint32(42, opts.zip64 ? 0xffffffff : offset, true);
    c.set(nameBytes, 46);
    c.set(cextra, 46 + nameBytes.length);
    central.push(c);
    offset += local.length + body.byteLength;
  }
  const cdSize = central.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const e = new DataView(end.buffer);
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, entries.length, true);
  e.setUint16(10, entries.length, true);
  e.setUint32(12, cdSize, true);
  e.setUint32(16, offset, true);
  const all = [...parts, ...central, end];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of all) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An .npz of float32/int64 arrays: name → [shape, values]. */
export function npzOf(arrays: Record<string, [number[], Float32Array | BigInt64Array | Uint8Array]>, opts: ZipOptions = {}): Uint8Array {
  return zipBytes(
    Object.entries(arrays).map(([name, [shape, data]]) => {
      const descr = data instanceof Float32Array ? "<f4" : data instanceof BigInt64Array ? "<i8" : "|b1";
      return [`${name}.npy`, npyBytes(descr, shape, data)];
    }),
    opts,
  );
}
