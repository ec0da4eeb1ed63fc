import { create, toBinary } from "@bufbuild/protobuf";
import { expect } from "chai";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { TensorProtoSchema } from "onnx-buf";
import { FormatError, parseNpy } from "../../compiler/calibration/npy.js";
import { readNpzFile, readTensorProtoFile } from "../../compiler/calibration/tensor-file.js";
import { DataType } from "../../compiler/ir/dtype.js";
import { decodeF16, encodeF16 } from "../../compiler/numeric/half.js";
import { npyBytes, zipBytes } from "../support/npy-files.js";
import { tempDir } from "../support/tmp.js";

const fixture = (name: string) => fileURLToPath(new URL(`../../../test/fixtures/calibration/${name}`, import.meta.url));
const f32 = (a: Uint8Array) => Array.from(new Float32Array(new Uint8Array(a).buffer));
const i64 = (a: Uint8Array) => Array.from(new BigInt64Array(new Uint8Array(a).buffer), Number);

/** A valid .npy whose header text is edited (same length, so the padding stays right). */
function editedHeader(from: string, to: string): Uint8Array {
  const a = npyBytes("<f4", [1], new Float32Array(1));
  const text = new TextDecoder("latin1").decode(a.subarray(0, 64));
  const edited = text.replace(from, to.padEnd(from.length, " "));
  const out = a.slice();
  out.set(Uint8Array.from(edited, (c) => c.charCodeAt(0)), 0);
  return out;
}

describe("calibration readers", () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  describe(".npy", () => {
    it("reads float32, float16, int64, int32 and bool in headers of versions 1, 2 and 3", () => {
      for (const version of [1, 2, 3] as const) {
        const a = parseNpy(npyBytes("<f4", [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]), { version }));
        expect([a.dataType, a.dims, f32(a.data)]).to.deep.equal([DataType.FLOAT, [2, 3], [1, 2, 3, 4, 5, 6]]);
      }
      const h = parseNpy(npyBytes("<f2", [3], encodeF16(Float32Array.from([0.5, -2, 65504]))));
      expect([h.dataType, Array.from(decodeF16(new Uint16Array(new Uint8Array(h.data).buffer)))]).to.deep.equal([DataType.FLOAT16, [0.5, -2, 65504]]);
      const l = parseNpy(npyBytes("<i8", [1, 2], BigInt64Array.from([7n, -1n])));
      expect([l.dataType, l.dims, i64(l.data)]).to.deep.equal([DataType.INT64, [1, 2], [7, -1]]);
      const i = parseNpy(npyBytes("<i4", [2], Int32Array.from([3, -4])));
      expect([i.dataType, Array.from(new Int32Array(new Uint8Array(i.data).buffer))]).to.deep.equal([DataType.INT32, [3, -4]]);
      const b = parseNpy(npyBytes("|b1", [4], Uint8Array.from([1, 0, 0, 1])));
      expect([b.dataType, Array.from(b.data)]).to.deep.equal([DataType.BOOL, [1, 0, 0, 1]]);
      const scalar = parseNpy(npyBytes("<f4", [], Float32Array.from([2.5])));
      expect([scalar.dims, f32(scalar.data)]).to.deep.equal([[], [2.5]]);
    });

    const bad: Array<[string, () => Uint8Array, RegExp]> = [
      ["no magic", () => new TextEncoder().encode("hello world, not numpy"), /not a \.npy file/],
      ["a truncated header", () => npyBytes("<f4", [2], Float32Array.from([1, 2])).subarray(0, 40), /truncated inside its header/],
      ["truncated data", () => {
        const a = npyBytes("<f4", [2, 3], new Float32Array(6));
        return a.subarray(0, a.length - 4);
      }, /truncated: shape \(2, 3\) needs 24 bytes of data, the file has 20/],
      ["trailing bytes", () => {
        const a = npyBytes("<f4", [1], new Float32Array(1));
        const b = new Uint8Array(a.length + 3);
        b.set(a);
        return b;
      }, /3 bytes after the data/],
      ["Fortran order", () => npyBytes("<f4", [2, 2], new Float32Array(4), { fortran: true }), /Fortran order/],
      ["big-endian data", () => npyBytes(">f4", [2], new Float32Array(2)), /big-endian/],
      ["an unsupported dtype", () => npyBytes("<c8", [1], new Float32Array(2)), /dtype '<c8' is not supported/],
      ["a structured dtype", () => editedHeader("'descr': '<f4'", "'descr': [('a'"), /structured/],
      ["a header without a shape", () => editedHeader("'shape': (1,)", "'shap': (1,)"), /no 'shape'/],
      ["format version 4", () => {
        const a = npyBytes("<f4", [1], new Float32Array(1));
        a[6] = 4;
        return a;
      }, /version 4/],
    ];
    for (const [what, make, msg] of bad) {
      it(`refuses ${what}`, () => {
        expect(() => parseNpy(make())).to.throw(FormatError, msg);
      });
    }
  });

  describe(".npz", () => {
    const x = npyBytes("<f4", [2, 2], Float32Array.from([1, 2, 3, 4]));
    const ids = npyBytes("<i8", [3], BigInt64Array.from([5n, 6n, 7n]));
    for (const opts of [{}, { deflate: true }, { zip64: true }, { zip64: true, deflate: true }]) {
      it(`reads the arrays of a hand-built archive ${JSON.stringify(opts)}`, () => {
        const p = join(tmp.dir, "h.npz");
        writeFileSync(p, zipBytes([["x.npy", x], ["input_ids.npy", ids]], opts));
        const arrays = readNpzFile(p);
        expect(arrays.map((a) => [a.name, a.dataType, a.dims])).to.deep.equal([["x", DataType.FLOAT, [2, 2]], ["input_ids", DataType.INT64, [3]]]);
        expect(f32(arrays[0]!.data)).to.deep.equal([1, 2, 3, 4]);
        expect(i64(arrays[1]!.data)).to.deep.equal([5, 6, 7]);
      });
    }

    it("reads archives written by NumPy (savez with ZIP64 headers, savez_compressed)", () => {
      const a = readNpzFile(fixture("numpy-savez.npz"));
      expect(a.map((e) => [e.name, e.dataType, e.dims])).to.deep.equal([["x", DataType.FLOAT, [2, 3]], ["ids", DataType.INT64, [1, 3]]]);
      expect(f32(a[0]!.data)).to.deep.equal([0, 1, 2, 3, 4, 5]);
      expect(i64(a[1]!.data)).to.deep.equal([1, 2, 3]);
      const b = readNpzFile(fixture("numpy-savez-compressed.npz"));
      expect(b.map((e) => [e.name, e.dataType, e.dims])).to.deep.equal([["arr_0", DataType.FLOAT16, [2, 3]], ["arr_1", DataType.BOOL, [2]]]);
      expect(Array.from(decodeF16(new Uint16Array(new Uint8Array(b[0]!.data).buffer)))).to.deep.equal([0, 1, 2, 3, 4, 5]);
      expect(Array.from(b[1]!.data)).to.deep.equal([1, 0]);
    });

    const bad: Array<[string, () => Uint8Array, RegExp]> = [
      ["a file that is not a ZIP archive", () => new Uint8Array(100).fill(7), /not a ZIP archive/],
      ["a truncated archive", () => zipBytes([["x.npy", x]]).subarray(0, 60), /not a ZIP archive|truncated/],
      ["a member with a wrong CRC-32", () => zipBytes([["x.npy", x]], { badCrc: true }), /CRC-32/],
      ["a member that is not .npy", () => zipBytes([["notes.txt", new Uint8Array(3)]]), /not a \.npy array/],
      ["a member that is not a valid array", () => zipBytes([["x.npy", x.subarray(0, x.length - 1)]]), /member 'x\.npy' is not a valid array: it is truncated/],
      ["a deflated member that does not inflate", () => {
        const z = zipBytes([["x.npy", x]], { deflate: true });
        z.fill(0xff, 30 + 5, 30 + 5 + 8);
        return z;
      }, /does not inflate|CRC-32|holds/],
      ["an unsupported compression method", () => {
        const z = zipBytes([["x.npy", x]]);
        const v = new DataView(z.buffer);
        v.setUint16(8, 12, true);
        v.setUint16(z.length - 22 - 46 - 5 + 10, 12, true);
        return z;
      }, /compression method 12/],
    ];
    for (const [what, make, msg] of bad) {
      it(`refuses ${what}`, () => {
        const p = join(tmp.dir, "bad.npz");
        writeFileSync(p, make());
        expect(() => readNpzFile(p)).to.throw(FormatError, msg);
      });
    }
  });

  describe("TensorProto (.pb)", () => {
    it("reads raw_data and typed-field tensors with their names", () => {
      const raw = join(tmp.dir, "input_0.pb");
      writeFileSync(raw, toBinary(TensorProtoSchema, create(TensorProtoSchema, {
        name: "pixel_values", dataType: DataType.FLOAT, dims: [1n, 2n], rawData: new Uint8Array(Float32Array.from([1.5, -2]).buffer),
      })));
      const a = readTensorProtoFile(raw);
      expect([a.name, a.dataType, a.dims, f32(a.data)]).to.deep.equal(["pixel_values", DataType.FLOAT, [1, 2], [1.5, -2]]);
      const typed = join(tmp.dir, "input_1.pb");
      writeFileSync(typed, toBinary(TensorProtoSchema, create(TensorProtoSchema, { name: "", dataType: DataType.INT64, dims: [3n], int64Data: [4n, 5n, 6n] })));
      const b = readTensorProtoFile(typed);
      expect([b.name, b.dataType, b.dims, i64(b.data)]).to.deep.equal(["", DataType.INT64, [3], [4, 5, 6]]);
    });

    it("refuses files that do not decode, are truncated, or whose data does not fit the shape", () => {
      const p = join(tmp.dir, "bad.pb");
      writeFileSync(p, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff]));
      expect(() => readTensorProtoFile(p)).to.throw(FormatError, /does not decode as an ONNX TensorProto/);
      const full = toBinary(TensorProtoSchema, create(TensorProtoSchema, { name: "x", dataType: DataType.FLOAT, dims: [4n], rawData: new Uint8Array(16) }));
      writeFileSync(p, full.subarray(0, full.length - 5));
      expect(() => readTensorProtoFile(p)).to.throw(FormatError);
      writeFileSync(p, toBinary(TensorProtoSchema, create(TensorProtoSchema, { name: "x", dataType: DataType.FLOAT, dims: [4n], rawData: new Uint8Array(12) })));
      expect(() => readTensorProtoFile(p)).to.throw(FormatError, /12 bytes of data but its shape \[4\]/);
    });
  });
});
