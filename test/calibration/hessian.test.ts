import { expect } from "chai";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ActivationRequest, collectActivationStats } from "../../compiler/calibration/collect.js";
import { HessianAccumulator } from "../../compiler/calibration/hessian.js";
import { openCalibration } from "../../compiler/calibration/samples.js";
import { DataType } from "../../compiler/ir/dtype.js";
import type { Model } from "../../compiler/ir/model.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { toFloat32 } from "../../compiler/weights/float-view.js";
import { normals } from "../support/calib-models.js";
import { npyBytes } from "../support/npy-files.js";
import { TinyModel, intAttr, intsAttr } from "../support/tiny-models.js";
import { tempDir } from "../support/tmp.js";

/** XᵀX of row-major X [n, K], straight from the definition (float64). */
function gram(rows: ArrayLike<number>[], K: number): Float64Array {
  const H = new Float64Array(K * K);
  for (const X of rows) {
    const n = X.length / K;
    for (let t = 0; t < n; t++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) H[i * K + j] += X[t * K + i]! * X[t * K + j]!;
  }
  return H;
}

function expectClose(got: Float64Array, want: Float64Array, tol: number, what: string): void {
  expect(got.length, what).to.equal(want.length);
  const scale = Math.max(...Array.from(want, Math.abs));
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!) / scale, `${what}[${i}]`).to.be.at.most(tol);
}

const K = 12, HID = 20, O = 8;
const TOKENS = [5, 3, 7];

/**
 * x [batch, 12] → fc1 (MatMul W1 [12, 20]) → Relu → h; h → q (MatMul Wq) and h → k (MatMul Wk), two
 * layers reading one activation; Transpose(h) → gemm_t (Gemm transA = 1, W3 [20, 8]).
 */
function model(): Model {
  const t = new TinyModel(31);
  const x = t.input("x", ["batch", K]);
  const h = t.op("Relu", [t.op("MatMul", [x, t.init("W1", [K, HID])], "fc1")], "relu");
  t.output(t.op("MatMul", [h, t.init("Wq", [HID, O])], "q"), ["batch", O]);
  t.output(t.op("MatMul", [h, t.init("Wk", [HID, O])], "k"), ["batch", O]);
  const ht = t.op("Transpose", [h], "ht", [intsAttr("perm", [1, 0])]);
  t.output(t.op("Gemm", [ht, t.init("W3", [HID, O])], "gemm_t", [intAttr("transA", 1)]), ["batch", O]);
  return t.model();
}

describe("Hessian XᵀX for SparseGPT (compiler/calibration/hessian.ts)", function () {
  this.timeout(60_000);

  it("accumulates XᵀX over samples like the definition, for row-major and channels-first X, float32 and float64", () => {
    const samples = [7, 1, 4, 9].map((n, i) => normals(n * K, 40 + i));
    samples[1]!.fill(0, 0, 3); // zeros are skipped, not mis-summed
    const want = gram(samples, K);
    const rows = new HessianAccumulator(K);
    const rows64 = new HessianAccumulator(K);
    const first = new HessianAccumulator(K);
    for (const X of samples) {
      rows.add(X);
      rows64.add(Float64Array.from(X));
      const n = X.length / K;
      const T = new Float32Array(X.length);
      for (let t = 0; t < n; t++) for (let k = 0; k < K; k++) T[k * n + t] = X[t * K + k]!;
      first.add(T, true);
    }
    for (const [what, acc] of [["rows", rows], ["float64 rows", rows64], ["channels first", first]] as const) {
      expect(acc.tokens, what).to.equal(21);
      const H = acc.matrix();
      expectClose(H, want, 1e-12, what);
      for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) expect(H[i * K + j], `${what}: symmetric`).to.equal(H[j * K + i]);
    }
    const both = new HessianAccumulator(K);
    both.addFrom(rows);
    both.addFrom(first);
    expect(both.tokens).to.equal(42);
    expectClose(both.matrix(), want.map((x) => 2 * x), 1e-12, "addFrom");
    expect(() => rows.add(new Float32Array(K + 1))).to.throw(/not a multiple/);
  });

  it("is gathered from onnxruntime for every observed activation, once per distinct tensor (q and k share one)", async () => {
    const tmp = tempDir();
    try {
      const input = join(tmp.dir, "h.onnx");
      writeModelFile(model(), input);
      const calib = join(tmp.dir, "calib");
      mkdirSync(calib);
      const xs = TOKENS.map((n, i) => normals(n * K, 70 + i));
      xs.forEach((x, i) => writeFileSync(join(calib, `s${i}.npy`), npyBytes("<f4", [TOKENS[i]!, K], x)));
      const m = readModelFile(input).model;
      const init = m.graph.local("W1")!.initializer!;
      const W1 = toFloat32(init.read(), init.dataType);
      const hs = xs.map((x, s) => {
        const h = new Float64Array(TOKENS[s]! * HID);
        for (let t = 0; t < TOKENS[s]!; t++) for (let j = 0; j < HID; j++) {
          let a = 0;
          for (let l = 0; l < K; l++) a += x[t * K + l]! * W1[l * HID + j]!;
          h[t * HID + j] = Math.max(0, a);
        }
        return h;
      });
      const requests: ActivationRequest[] = [
        { name: "x", K, channelsFirst: false, elemType: DataType.FLOAT, origin: "input" },
        { name: "relu_out", K: HID, channelsFirst: false, elemType: DataType.FLOAT, origin: "internal" }, // q
        { name: "relu_out", K: HID, channelsFirst: false, elemType: DataType.FLOAT, origin: "internal" }, // k
        { name: "ht_out", K: HID, channelsFirst: true, elemType: DataType.FLOAT, origin: "internal" },
      ];
      const { stats } = await collectActivationStats(input, requests, openCalibration(calib, m, {}), { rowsPerActivation: 4, hessian: true });
      expect([...stats.keys()]).to.deep.equal(["x", "relu_out", "ht_out^T"]);
      expectClose(stats.get("x")!.hessian!.matrix(), gram(xs, K), 1e-6, "x (graph input)");
      expectClose(stats.get("relu_out")!.hessian!.matrix(), gram(hs, HID), 1e-5, "h (internal, read by q and k)");
      expectClose(stats.get("ht_out^T")!.hessian!.matrix(), gram(hs, HID), 1e-5, "hᵀ (Gemm transA, channels first)");
      expect(stats.get("relu_out")!.hessian!.tokens).to.equal(15);
      const plain = await collectActivationStats(input, requests, openCalibration(calib, m, {}), { rowsPerActivation: 4 });
      expect(plain.stats.get("x")!.hessian, "only when asked").to.equal(undefined);
    } finally {
      tmp.cleanup();
    }
  });
});
