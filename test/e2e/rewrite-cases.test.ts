import { expect } from "chai";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { compileFile } from "../../compiler/compile.js";
import { DataType } from "../../compiler/ir/dtype.js";
import type { Model } from "../../compiler/ir/model.js";
import { decodeF16, encodeF16 } from "../../compiler/numeric/half.js";
import { readModelFile } from "../../compiler/serde/read.js";
import { writeModelFile } from "../../compiler/serde/write.js";
import { rebuiltLayers, type RebuiltLayer } from "../support/compiled-weights.js";
import { TinyModel, floatAttr, intAttr, intsAttr } from "../support/tiny-models.js";
import { tempDir } from "../support/tmp.js";
import { checkVnmPattern } from "../support/vnm-reference.js";

const K = 37, N = 21, T = 3;

/** Plain dense Y = X·Wᵀ + bias, X [T, K], W [N, K]. */
function linear(X: Float32Array, W: Float32Array, bias: Float32Array | null, t: number, k: number, n: number): Float32Array {
  const Y = new Float32Array(t * n);
  for (let i = 0; i < t; i++) for (let o = 0; o < n; o++) {
    let s = bias ? bias[o]! : 0;
    for (let j = 0; j < k; j++) s += X[i * k + j]! * W[o * k + j]!;
    Y[i * n + o] = s;
  }
  return Y;
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

interface Case {
  name: string;
  build(t: TinyModel): void;
  /** Inputs by name. */
  feeds(t: TinyModel): Record<string, Float32Array | Uint8Array>;
  /** Expected outputs from the rebuilt layers (in node order) and the inputs. */
  expected(layers: RebuiltLayer[], f: Record<string, Float32Array | Uint8Array>): Record<string, Float32Array>;
  rewritten: number;
  dtype?: number;
}

const byName = (layers: RebuiltLayer[], name: string) => layers.find((l) => l.node.name === name || l.node.name === `${name}_vnm`)!;

const cases: Case[] = [
  {
    name: "MatMul with an initializer weight [in, out]",
    build: (t) => t.output(t.op("MatMul", [t.input("X", ["batch", K]), t.init("B", [K, N])], "mm"), ["batch", N]),
    feeds: (t) => ({ X: t.random(T * K) }),
    expected: (l, f) => ({ mm_out: linear(f.X as Float32Array, byName(l, "mm").W, null, T, K, N) }),
    rewritten: 1,
  },
  {
    name: "MatMul behind Transpose of a Constant node (as exporters write nn.Linear)",
    build: (t) => {
      const wt = t.op("Transpose", [t.constantNode("W", [N, K])], "wt", [intsAttr("perm", [1, 0])]);
      t.output(t.op("MatMul", [t.input("X", ["batch", K]), wt], "mm"), ["batch", N]);
    },
    feeds: (t) => ({ X: t.random(T * K) }),
    expected: (l, f) => ({ mm_out: linear(f.X as Float32Array, byName(l, "mm").W, null, T, K, N) }),
    rewritten: 1,
  },
  {
    name: "Gemm transB=1 with alpha and beta·C folded into the bias",
    build: (t) => t.output(t.op("Gemm", [t.input("X", [T, K]), t.init("W", [N, K]), t.init("C", [N])], "gemm",
      [intAttr("transB", 1), floatAttr("alpha", 0.5), floatAttr("beta", 2)]), [T, N]),
    feeds: (t) => ({ X: t.random(T * K) }),
    expected: (l, f) => {
      const g = byName(l, "gemm");
      expect(g.bias, "bias input").to.not.equal(null);
      return { gemm_out: linear(f.X as Float32Array, g.W, g.bias, T, K, N) };
    },
    rewritten: 1,
  },
  {
    name: "Gemm transA=1 with a non-constant C kept as an Add (with beta)",
    build: (t) => t.output(t.op("Gemm", [t.input("X", [K, T]), t.init("B", [K, N]), t.input("C", [T, N])], "gemm",
      [intAttr("transA", 1), floatAttr("beta", 0.5)]), [T, N]),
    feeds: (t) => ({ X: t.random(K * T), C: t.random(T * N) }),
    expected: (l, f) => {
      const y = linear(transpose(f.X as Float32Array, K, T), byName(l, "gemm").W, null, T, K, N);
      const c = f.C as Float32Array;
      return { gemm_out: y.map((v, i) => v + 0.5 * c[i]!) };
    },
    rewritten: 1,
  },
  {
    name: "Gemm with a constant 2-D C kept as an Add",
    build: (t) => {
      t.output(t.op("Gemm", [t.input("X", [T, K]), t.init("W", [N, K]), t.init("C", [T, N])], "gemm", [intAttr("transB", 1)]), [T, N]);
    },
    feeds: (t) => ({ X: t.random(T * K) }),
    expected: (l, f) => {
      const y = linear(f.X as Float32Array, byName(l, "gemm").W, null, T, K, N);
      return { gemm_out: y }; // C is compared through the runtime only (added back below)
    },
    rewritten: 1,
  },
  {
    name: "one weight shared by two MatMuls is packed once",
    build: (t) => {
      const x = t.input("X", ["batch", K]);
      const b = t.init("B", [K, N]);
      t.output(t.op("MatMul", [x, b], "mm1"), ["batch", N]);
      t.output(t.op("MatMul", [t.op("Relu", [x], "relu"), b], "mm2"), ["batch", N]);
    },
    feeds: (t) => ({ X: t.random(T * K) }),
    expected: (l, f) => {
      const x = f.X as Float32Array;
      expect(byName(l, "mm1").node.inputs[1]).to.equal(byName(l, "mm2").node.inputs[1]);
      return { mm1_out: linear(x, byName(l, "mm1").W, null, T, K, N), mm2_out: linear(x.map((v) => Math.max(0, v)), byName(l, "mm2").W, null, T, K, N) };
    },
    rewritten: 2,
  },
  {
    name: "If branches reading outer-scope weights",
    build: (t) => {
      const x = t.input("X", [T, K]);
      const cond = t.input("cond", [], DataType.BOOL);
      const w1 = t.init("W_then", [K, N]), w2 = t.init("W_else", [K, N]);
      const branch = (name: string, w: typeof w1) => {
        const g = new (t.graph.constructor as typeof import("../../compiler/ir/graph.js").Graph)(name, t.graph.names, t.graph);
        const y = t.op("MatMul", [x, w], `${name}_mm`, [], g);
        y.type = { elemType: DataType.FLOAT, shape: [T, N] };
        g.outputs.push(y);
        return g;
      };
      const out = t.graph.freshValue("if_out");
      const node = t.graph.addNode({ opType: "If", inputs: [cond], outputs: [out], name: "if" });
      const thenG = branch("then", w1), elseG = branch("else", w2);
      thenG.owner = node; elseG.owner = node;
      node.attributes = [{ name: "then_branch", value: { kind: "graph", value: thenG } }, { name: "else_branch", value: { kind: "graph", value: elseG } }];
      t.output(out, [T, N]);
    },
    feeds: (t) => ({ X: t.random(T * K), cond: Uint8Array.from([1]) }),
    expected: (l, f) => ({ if_out: linear(f.X as Float32Array, byName(l, "then_mm").W, null, T, K, N) }),
    rewritten: 2,
  },
  {
    name: "float16 activations with a Cast of a float32 weight",
    dtype: DataType.FLOAT16,
    build: (t) => {
      const w = t.op("Cast", [t.init("B", [K, N], DataType.FLOAT)], "cast", [intAttr("to", DataType.FLOAT16)]);
      t.output(t.op("MatMul", [t.input("X", ["batch", K]), w], "mm"), ["batch", N]);
    },
    feeds: (t) => ({ X: t.random(T * K) }),
    expected: (l, f) => ({ mm_out: linear(f.X as Float32Array, byName(l, "mm").W, null, T, K, N) }),
    rewritten: 1,
  },
];

function toOrt(v: Float32Array | Uint8Array, dims: readonly number[], dtype: number): ort.Tensor {
  if (v instanceof Uint8Array) return new ort.Tensor("bool", v, dims);
  return dtype === DataType.FLOAT16 ? new ort.Tensor("float16", encodeF16(v), dims) : new ort.Tensor("float32", v, dims);
}

function inputDims(model: Model, name: string): number[] {
  return model.graph.inputs.find((v) => v.name === name)!.type!.shape!.map((d) => (typeof d === "number" ? d : T));
}

describe("rewrite cases end to end (compiled model in onnxruntime vs plain dense computation)", function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  for (const [i, c] of cases.entries()) {
    it(c.name, async () => {
      const dtype = c.dtype ?? DataType.FLOAT;
      const t = new TinyModel(11 + i, dtype);
      c.build(t);
      const input = join(tmp.dir, `case${i}.onnx`);
      writeModelFile(t.model(), input);
      const { outputPath, report } = await compileFile(input, { vnm: "8:2:5", minSize: 0 });
      expect(report.totals.rewritten).to.equal(c.rewritten);
      expect(report.verification?.passed).to.equal(true);
      const compiled = readModelFile(outputPath).model;
      const layers = rebuiltLayers(compiled);
      for (const l of layers) expect(checkVnmPattern(l.W, l.outFeatures, l.inFeatures, l.v, l.m)).to.deep.equal([]);
      const feeds = c.feeds(t);
      const original = readModelFile(input).model;
      const ortFeeds = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toOrt(v, inputDims(original, k), dtype)]));
      const session = await ort.InferenceSession.create(outputPath, { logSeverityLevel: 3 });
      const got = await session.run(ortFeeds);
      await session.release();
      const want = c.expected(layers, feeds);
      if (c.name.includes("constant 2-D C")) {
        const cInit = original.graph.local("C")!.initializer!.read().slice();
        const cv = new Float32Array(cInit.buffer);
        want.gemm_out = want.gemm_out!.map((v, j) => v + cv[j]!);
      }
      for (const [name, y] of Object.entries(want)) {
        const out = got[name]!;
        const data = out.type === "float16" ? decodeF16(out.data as Uint16Array) : (out.data as Float32Array);
        const scale = Math.max(...y.map(Math.abs));
        const err = Math.max(...y.map((v, j) => Math.abs(v - data[j]!))) / scale;
        expect(err, `max relative error of ${name}`).to.be.at.most(dtype === DataType.FLOAT16 ? 2e-3 : 1e-5);
      }
    });
  }

  it("reports every MatMul/Gemm left dense with a reason code", async () => {
    const t = new TinyModel(3);
    const x = t.input("X", ["batch", K]);
    const x3 = t.input("X3", [3, T, K]);
    t.output(t.op("MatMul", [x, t.op("Transpose", [x], "xt", [intsAttr("perm", [1, 0])])], "act_act"));
    t.output(t.op("MatMul", [x3, t.init("B3", [3, K, N])], "batched"));
    t.output(t.op("MatMul", [x, t.init("small", [K, 2])], "tiny"));
    t.output(t.op("MatMul", [x, t.init("B_head", [K, N])], "lm_head"));
    t.output(t.op("MatMul", [x, t.init("B_ok", [K, N])], "ok"));
    const input = join(tmp.dir, "skips.onnx");
    writeModelFile(t.model(), input);
    const { report } = await compileFile(input, { vnm: "8:2:8", minSize: 100, exclude: ["*head*"], verify: false });
    const codes = Object.fromEntries(report.layers.map((l) => [l.node, l.status === "sparse" ? "sparse" : l.code]));
    expect(codes).to.deep.equal({ ok: "sparse", act_act: "VNMC-S001", batched: "VNMC-S002", tiny: "VNMC-S003", lm_head: "VNMC-S004" });
  });

  it("keeps the exact original values of kept weights (fp32, fp16 and bf16 bit patterns)", async () => {
    for (const dtype of [DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16]) {
      const t = new TinyModel(5, dtype);
      t.output(t.op("MatMul", [t.input("X", ["batch", K]), t.init("B", [K, N])], "mm"));
      const input = join(tmp.dir, `exact${dtype}.onnx`);
      const m = t.model();
      writeModelFile(m, input);
      const { outputPath } = await compileFile(input, { vnm: "16:2:6", minSize: 0, verify: false });
      const orig = readModelFile(input).model.graph.local("B")!.initializer!.read();
      const size = dtype === DataType.FLOAT ? 4 : 2;
      const layer = rebuiltLayers(readModelFile(outputPath).model)[0]!;
      const values = layer.node.inputs[1]!.initializer!.read();
      // Every stored nonzero value is bit-identical to some original weight in its row.
      const originalBits = new Set<string>();
      for (let i = 0; i < orig.byteLength; i += size) originalBits.add(Buffer.from(orig.subarray(i, i + size)).toString("hex"));
      let nonzero = 0;
      for (let i = 0; i < values.byteLength; i += size) {
        const bits = Buffer.from(values.subarray(i, i + size)).toString("hex");
        if (/^0+$/.test(bits)) continue;
        nonzero++;
        expect(originalBits.has(bits), `value ${bits}`).to.equal(true);
      }
      expect(nonzero).to.equal(N * 2 * Math.ceil(K / 6) - N * 1); // 7 groups, the last one has 1 real column
    }
  });
});
