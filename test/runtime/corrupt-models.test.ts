import { expect } from "chai";
import { Tensor } from "onnxruntime-common";
import { NativeSession } from "../../compiler/runtime/native-session.js";
import { encodeModel } from "../../compiler/serde/write.js";
import { requireNative } from "../support/native.js";
import { layerModel, type ModelOverrides, type PackedLayer, randomLayer, TestRng } from "../support/packed-layer.js";

/** A model is untrusted input: the kernel validates it when the session is created; nothing crashes. */
describe("runtime: corrupted models are rejected at session creation (the process survives)", function () {
  this.timeout(120_000);
  before(function () {
    requireNative(this);
  });

  // K = 45, M = 8: G = 6 ... use M = 6 for an odd G (7 groups, unused high meta nibble).
  const base = () => randomLayer({ K: 40, N: 20, V: 16, M: 6, act: "float32", values: "float32", columns: "permuted", rowIndex: true, bias: true }, new TestRng(11));

  async function rejects(layer: PackedLayer, o: ModelOverrides, re: RegExp): Promise<void> {
    let err: unknown;
    try {
      const s = await NativeSession.create(encodeModel(layerModel(layer, 1, o)), { logSeverityLevel: 4 });
      await s.release();
    } catch (e) {
      err = e;
    }
    expect(err, `expected rejection matching ${re}`).to.be.instanceOf(Error);
    expect((err as Error).message).to.match(re);
  }

  const cases: Array<[string, (l: PackedLayer) => ModelOverrides | void, RegExp]> = [
    ["an invalid meta code (p0 = p1)", (l) => void (l.meta[3] = (l.meta[3]! & 0xf0) | 0b0101), /meta/],
    ["a meta code with p0 > p1", (l) => void (l.meta[0] = (l.meta[0]! & 0xf0) | (2 | (1 << 2))), /meta/],
    ["a nonzero unused high nibble (odd G)", (l) => void (l.meta[3] = l.meta[3]! | 0x50), /nibble|meta/],
    ["a column index = K", (l) => void (l.columns[5] = 40), /column/],
    ["a negative column index", (l) => void (l.columns[0] = -1), /column/],
    ["a huge column index", (l) => void (l.columns[9] = 0x7fffffff), /column/],
    ["a duplicated row_index", (l) => void (l.rowIndex![l.rowIndex!.indexOf(0)] = 1), /row_index|produced/],
    ["an out-of-range row_index", (l) => void (l.rowIndex![l.rowIndex!.indexOf(3)] = 20), /row_index/],
    ["a row_index below -1", (l) => void (l.rowIndex![l.rowIndex!.indexOf(-1)] = -2), /row_index/],
    ["values of the wrong shape", () => ({ valuesDims: [32, 7 * 2 - 1] }), /values|shape/],
    ["columns of the wrong shape", () => ({ columnsDims: [2, 7, 2] }), /columns|shape/],
    ["meta of the wrong shape", () => ({ metaDims: [16, 4] }), /meta|shape/],
    ["bias of the wrong length", () => ({ biasDims: [10] }), /bias/],
    ["in_features disagreeing with the tensors", () => ({ attrs: { in_features: 400 } }), /in_features|shape|columns|values/],
    ["out_features disagreeing with the tensors", () => ({ attrs: { out_features: 64 } }), /out_features|shape|values|row/],
    ["n = 3", () => ({ attrs: { n: 3 } }), /\bn\b/],
    ["v = 0", () => ({ attrs: { v: 0 } }), /\bv\b/],
    ["m = 3", () => ({ attrs: { m: 3 } }), /\bm\b/],
    ["a negative in_features", () => ({ attrs: { in_features: -40 } }), /in_features/],
    ["a missing attribute", () => ({ omitAttr: "m" }), /\bm\b|attribute/],
  ];
  for (const [what, corrupt, re] of cases) {
    it(`rejects ${what}`, async () => {
      const l = base();
      const o = corrupt(l) ?? {};
      await rejects(l, o, re);
    });
  }

  it("rejects bytes that are not a model, a truncated model and an empty file", async () => {
    const good = encodeModel(layerModel(base(), 1));
    const rng = new TestRng(5);
    const inputs = [good.subarray(0, good.length >> 1), Uint8Array.from({ length: 4096 }, () => rng.int(256)), good.subarray(0, 7)];
    for (const bytes of inputs) {
      let err: unknown;
      try {
        await NativeSession.create(bytes, { logSeverityLevel: 4 });
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(Error);
    }
    let err: unknown;
    try {
      await NativeSession.create(new Uint8Array(0));
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/empty/);
  });

  it("rejects a run whose activations have the wrong K (the input shape is symbolic)", async () => {
    const s = await NativeSession.create(encodeModel(layerModel(base(), 1, { inputShape: ["t", "k"] })), { logSeverityLevel: 4 });
    let err: unknown;
    try {
      await s.run({ A: new Tensor("float32", new Float32Array(3 * 41), [3, 41]) });
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/VNMSparseGemm|40|41/);
    const y = await s.run({ A: new Tensor("float32", new Float32Array(3 * 40).fill(1), [3, 40]) });
    expect(y.Y!.dims).to.deep.equal([3, 20]);
    await s.release();
  });

  it("still creates and runs a valid model after all of that", async () => {
    const s = await NativeSession.create(encodeModel(layerModel(base(), 1)));
    const y = await s.run({ A: new Tensor("float32", new Float32Array(40).fill(0.5), [1, 40]) });
    expect(y.Y!.dims).to.deep.equal([1, 20]);
    expect([...(y.Y!.data as Float32Array)].every(Number.isFinite)).to.equal(true);
    await s.release();
  });
});
