import { expect } from "chai";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ActivationStats } from "../../compiler/calibration/activation-stats.js";
import { calibrate } from "../../compiler/calibration/calibrate.js";
import { type ActivationRequest, collectActivationStats } from "../../compiler/calibration/collect.js";
import { openCalibration } from "../../compiler/calibration/samples.js";
import { compileFile } from "../../compiler/compile.js";
import type { CompileState } from "../../compiler/compile-state.js";
import { DiagnosticSink } from "../../compiler/diagnostics.js";
import { DataType } from "../../compiler/ir/dtype.js";
import { Graph } from "../../compiler/ir/graph.js";
import type { Model } from "../../compiler/ir/model.js";
import { PassManager } from "../../compiler/pass/manager.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { formatVnm, parseVnm } from "../../compiler/vnm/config.js";
import { toFloat32 } from "../../compiler/weights/float-view.js";
import { recipeKey } from "../../compiler/weights/weight-recipe.js";
import { FindCandidates } from "../../passes/find-candidates.js";
import { deadOnInput } from "../../passes/remove-unused.js";
import { normals, oneInputModel } from "../support/calib-models.js";
import { rebuiltLayers } from "../support/compiled-weights.js";
import { npzOf } from "../support/npy-files.js";
import { TinyModel, intAttr, intsAttr } from "../support/tiny-models.js";
import { tempDir } from "../support/tmp.js";

const K = 16, H = 24, O = 8;
const SAMPLES = [3, 5, 2]; // tokens per sample

/**
 * x [batch, 16] → fc1 (MatMul, W1 [16, 24]) → Relu → h; h → fc2 (MatMul, W2) → y;
 * Transpose(h) → gemm_t (Gemm transA=1, W3 [24, 8]) → y_t; x → shared_a (MatMul, Ws) and
 * Relu(x) → shared_b (MatMul, the same Ws) → ya, yb; an If whose branches compute Relu(x) inside and
 * feed it to a MatMul (unobservable).
 */
function model(): Model {
  const t = new TinyModel(21);
  const x = t.input("x", ["batch", K]);
  const cond = t.input("cond", [], DataType.BOOL);
  const h = t.op("Relu", [t.op("MatMul", [x, t.init("W1", [K, H])], "fc1")], "relu");
  t.output(t.op("MatMul", [h, t.init("W2", [H, O])], "fc2"), ["batch", O]);
  const ht = t.op("Transpose", [h], "ht", [intsAttr("perm", [1, 0])]);
  t.output(t.op("Gemm", [ht, t.init("W3", [H, O])], "gemm_t", [intAttr("transA", 1)]), ["batch", O]);
  const ws = t.init("Ws", [K, O]);
  t.output(t.op("MatMul", [x, ws], "shared_a"), ["batch", O]);
  t.output(t.op("MatMul", [t.op("Relu", [x], "relu_x"), ws], "shared_b"), ["batch", O]);
  const wIf = t.init("W_if", [K, O]);
  const out = t.graph.freshValue("if_out");
  const node = t.graph.addNode({ opType: "If", inputs: [cond], outputs: [out], name: "if" });
  const branch = (name: string) => {
    const g = new Graph(name, t.graph.names, t.graph, node);
    const inner = t.op("Relu", [x], `${name}_relu`, [], g);
    const y = t.op("MatMul", [inner, wIf], `${name}_mm`, [], g);
    y.type = { elemType: DataType.FLOAT, shape: ["batch", O] };
    g.outputs.push(y);
    return g;
  };
  node.attributes = [{ name: "then_branch", value: { kind: "graph", value: branch("then") } }, { name: "else_branch", value: { kind: "graph", value: branch("else") } }];
  t.output(out, ["batch", O]);
  return t.model();
}

function weight(m: Model, name: string): Float32Array {
  const init = m.graph.local(name)!.initializer!;
  return Float32Array.from(toFloat32(init.read(), init.dataType));
}

/** Plain JS: relu(X · B) for B [k, n] as stored. */
function reluMatmul(X: Float32Array, B: Float32Array, t: number, k: number, n: number): Float64Array {
  const Y = new Float64Array(t * n);
  for (let i = 0; i < t; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let l = 0; l < k; l++) s += X[i * k + l]! * B[l * n + j]!;
    Y[i * n + j] = Math.max(0, s);
  }
  return Y;
}

function columnNorms(rows: ArrayLike<number>[], k: number): number[] {
  const s = new Float64Array(k);
  for (const r of rows) for (let i = 0; i < r.length; i++) s[i % k] += r[i]! ** 2;
  return Array.from(s, Math.sqrt);
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, what).to.equal(want.length);
  const scale = Math.max(...Array.from(want, Math.abs));
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!) / scale, `${what}[${i}]`).to.be.at.most(tol);
}

describe("calibration statistics", function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let input: string, calibDir: string;
  const xs = SAMPLES.map((t, i) => normals(t * K, 100 + i));
  before(() => {
    tmp = tempDir();
    input = join(tmp.dir, "stats.onnx");
    writeModelFile(model(), input);
    calibDir = join(tmp.dir, "calib");
    mkdirSync(calibDir);
    xs.forEach((x, i) => writeFileSync(join(calibDir, `s${i}.npz`), npzOf({ x: [[SAMPLES[i]!, K], x], cond: [[], Uint8Array.from([1])] })));
  });
  after(() => tmp.cleanup());

  it("gathers ‖X[:,k]‖₂ of every observable layer input like a plain JS computation, with kept rows", async () => {
    const m = readModelFile(input).model;
    const state: CompileState = {
      options: { vnm: parseVnm("8:2:4"), include: [], exclude: [], minSize: 0, emit: "sparse", retainPacked: false, score: "wanda" },
      candidates: [], skipped: [], weights: new Map(), initiallyUnused: deadOnInput(m),
    };
    const diagnostics = new DiagnosticSink();
    new PassManager<CompileState>([new FindCandidates()]).run(m, { diagnostics, state });
    const summary = await calibrate(input, m, state, openCalibration(calibDir, m, {}), "wanda", diagnostics);
    expect(summary.samples).to.equal(3);
    expect(summary.unobservedLayers).to.deep.equal(["then_mm", "else_mm"]);
    expect(diagnostics.warnings.map((d) => [d.code, d.node])).to.deep.equal([["VNMC-W005", "then_mm"], ["VNMC-W005", "else_mm"]]);
    const scoringOf = (label: string) => {
      const c = state.candidates.find((x) => x.label === label)!;
      return state.scoring!.get(recipeKey(c.recipe, formatVnm(c.config)));
    };
    const W1 = weight(m, "W1");
    const hs = xs.map((x, i) => reluMatmul(x, W1, SAMPLES[i]!, K, H));
    const reluX = xs.map((x) => x.map((v) => Math.max(0, v)));
    const tokens = SAMPLES.reduce((a, b) => a + b, 0);

    const fc1 = scoringOf("fc1")!;
    expect(fc1.kind).to.equal("wanda");
    expectClose(fc1.norms!, columnNorms(xs, K), 1e-6, "fc1 norms (graph input)");
    expect(fc1.rowCount).to.equal(tokens);
    const fc2 = scoringOf("fc2")!;
    expectClose(fc2.norms!, columnNorms(hs, H), 1e-5, "fc2 norms (internal value)");
    expectClose(scoringOf("gemm_t")!.norms!, columnNorms(hs, H), 1e-5, "gemm_t norms (Gemm transA, channels first)");
    expectClose(scoringOf("shared_a")!.norms!, columnNorms([...xs, ...reluX], K), 1e-6, "shared weight: norms over both inputs' tokens");
    expect(scoringOf("then_mm"), "unobservable: no statistics, magnitude").to.equal(undefined);

    // Every kept row is a real row of the activation (all rows, as there are fewer than the capacity).
    const realRows = hs.flatMap((h) => Array.from({ length: h.length / H }, (_, i) => h.subarray(i * H, i * H + H)));
    expect(fc2.rowCount).to.equal(realRows.length);
    const matched = new Set<number>();
    for (let i = 0; i < fc2.rowCount!; i++) {
      const row = fc2.rows!.subarray(i * H, i * H + H);
      const j = realRows.findIndex((r, idx) => !matched.has(idx) && r.every((v, k) => Math.abs(v - row[k]!) <= 1e-4 * (1 + Math.abs(v))));
      expect(j, `kept row ${i} is a real row`).to.be.at.least(0);
      matched.add(j);
    }
  });

  it("fetches activations in groups under a byte budget, with the same statistics", async () => {
    const p = join(tmp.dir, "one.onnx");
    writeModelFile(oneInputModel(), p);
    const m = readModelFile(p).model;
    const requests: ActivationRequest[] = [
      { name: "x", K: 16, channelsFirst: false, elemType: DataType.FLOAT, origin: "input" },
      { name: "fc1_out", K: 32, channelsFirst: false, elemType: DataType.FLOAT, origin: "internal" },
      { name: "relu_out", K: 32, channelsFirst: false, elemType: DataType.FLOAT, origin: "internal" },
    ];
    const source = () => openCalibration("random:3", m, { x: [5, 16] });
    const all = await collectActivationStats(p, requests, source(), { rowsPerActivation: 8 });
    const tiny = await collectActivationStats(p, requests, source(), { rowsPerActivation: 8, fetchBudgetBytes: 1 });
    expect(all.runs, "one run per sample after the first fetch sized the groups").to.equal(3 + 1);
    expect(tiny.runs, "one run per fetched activation and sample").to.equal(3 * 2);
    for (const r of requests) {
      const [a, b] = [all.stats.get(r.name)!, tiny.stats.get(r.name)!];
      expect(a.tokens, r.name).to.equal(15);
      expect(Array.from(b.sumSquares), r.name).to.deep.equal(Array.from(a.sumSquares));
      expect(Array.from(b.rows), r.name).to.deep.equal(Array.from(a.rows));
    }
  });

  it("keeps a reproducible uniform sample of rows, bounded by its capacity", () => {
    const a = new ActivationStats(4, 5, 7), b = new ActivationStats(4, 5, 7);
    const X = Float32Array.from({ length: 4 * 100 }, (_, i) => Math.floor(i / 4)); // row t is all t
    for (let s = 0; s < 4; s++) {
      a.add(X.subarray(s * 100, s * 100 + 100));
      b.add(X.subarray(s * 100, s * 100 + 100));
    }
    expect([a.tokens, a.rowCount]).to.deep.equal([100, 5]);
    expect(Array.from(a.rows)).to.deep.equal(Array.from(b.rows));
    const picked = Array.from({ length: 5 }, (_, i) => a.rows[i * 4]!);
    expect(new Set(picked).size).to.equal(5);
    for (let i = 0; i < 5; i++) expect(Array.from(a.rows.subarray(i * 4, i * 4 + 4))).to.deep.equal([picked[i], picked[i], picked[i], picked[i]]);
    expect(Array.from(a.sumSquares)).to.deep.equal(new Array(4).fill(Array.from({ length: 100 }, (_, t) => t * t).reduce((x, y) => x + y, 0)));
  });

  it("reports each layer's output error on the calibration rows, and the outputs' quality on the samples", async () => {
    const { report, outputPath } = await compileFile(input, { vnm: "8:2:8", minSize: 0, calib: calibDir, score: "wanda" });
    expect(report.calibration).to.include({ source: "files", samples: 3, dataFree: false, observedLayers: 5 });
    expect(report.score).to.equal("wanda");
    const rows = Object.fromEntries(report.layers.map((l) => [l.node, l]));
    expect(rows.then_mm!.score).to.equal("magnitude");
    expect(rows.then_mm!.outputError).to.equal(undefined);
    expect(rows.fc1!.score).to.equal("wanda");
    // fc1's error from the rebuilt pruned weight and all calibration rows, in plain JS.
    const orig = readModelFile(input).model;
    const W1 = weight(orig, "W1"); // [K, H] as MatMul's B
    const fc1 = rebuiltLayers(readModelFile(outputPath).model).find((l) => l.node.name === "fc1")!;
    let err2 = 0, ref2 = 0;
    for (const x of xs) {
      for (let t = 0; t < x.length / K; t++) {
        for (let o = 0; o < H; o++) {
          let y = 0, yp = 0;
          for (let k = 0; k < K; k++) {
            y += x[t * K + k]! * W1[k * H + o]!;
            yp += x[t * K + k]! * fc1.W[o * K + k]!;
          }
          ref2 += y * y;
          err2 += (y - yp) ** 2;
        }
      }
    }
    expect(rows.fc1!.outputErrorRows).to.equal(10);
    expect(rows.fc1!.outputError!).to.be.closeTo(Math.sqrt(err2 / ref2), 1e-5);
    expect(rows.fc1!.keptScore).to.be.greaterThan(0).and.at.most(1);
    const q = report.verification!.calibration!;
    expect([q.samples, q.dataFree]).to.deep.equal([3, false]);
    expect(q.outputs.map((o) => o.name).sort()).to.deep.equal(["fc2_out", "gemm_t_out", "if_out", "shared_a_out", "shared_b_out"]);
    for (const o of q.outputs) {
      expect(o.cosine, o.name).to.be.within(0.3, 1);
      expect(o.relL2Error, o.name).to.be.within(1e-4, 1.5);
    }
  });
});
