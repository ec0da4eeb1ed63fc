import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import * as ort from "onnxruntime-node";
import type { Model } from "../../compiler/ir/model.js";
import { checkModelInvariants } from "../../compiler/pass/invariants.js";
import { decodeF16, encodeF16 } from "../../compiler/numeric/half.js";
import { encodeModel, writeModelFile } from "../../compiler/serde/write.js";
import type { Dtype } from "../../models/graph-builder.js";
import { buildLlamaBlock, buildModel, buildMlp, MODEL_KINDS, type ModelKind, registry, Rng, vitImageSize } from "../../models/index.js";

const BATCH = 2;
const SEQ = 8;

type Feeds = Record<string, ort.Tensor>;

function floatTensor(dtype: Dtype, data: Float32Array, dims: number[]): ort.Tensor {
  return dtype === "fp16" ? new ort.Tensor("float16", encodeF16(data), dims) : new ort.Tensor("float32", data, dims);
}

function toF32(t: ort.Tensor): Float32Array {
  if (t.type === "float32") return t.data as Float32Array;
  if (t.type === "float16") {
    const d = t.data as unknown;
    return d instanceof Uint16Array ? decodeF16(d) : Float32Array.from(d as ArrayLike<number>);
  }
  throw new Error(`unexpected output type ${t.type}`);
}

/** Random inputs for a model, as float32 values (so fp16/fp32 runs can share them). */
function inputValues(model: Model, seed: number): Map<string, { dims: number[]; data: Float32Array | BigInt64Array }> {
  const rng = new Rng(seed);
  const out = new Map<string, { dims: number[]; data: Float32Array | BigInt64Array }>();
  for (const v of model.graph.inputs) {
    const dims = v.type!.shape!.map((d) => (d === "batch" ? BATCH : d === "seq" ? SEQ : (d as number)));
    const count = dims.reduce((a, b) => a * b, 1);
    if (v.name === "input_ids") out.set(v.name, { dims, data: BigInt64Array.from({ length: count }, () => BigInt(rng.int(512))) });
    else out.set(v.name, { dims, data: rng.fillNormal(count) });
  }
  return out;
}

function feedsOf(dtype: Dtype, values: ReturnType<typeof inputValues>): Feeds {
  const feeds: Feeds = {};
  for (const [name, { dims, data }] of values) {
    feeds[name] = data instanceof BigInt64Array ? new ort.Tensor("int64", data, dims) : floatTensor(dtype, data, dims);
  }
  return feeds;
}

async function run(model: Model | Uint8Array, feeds: Feeds): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(model instanceof Uint8Array ? model : encodeModel(model));
  const result = await session.run(feeds);
  await session.release();
  return result[session.outputNames[0]!]!;
}

function expectedShape(kind: ModelKind, model: Model): number[] {
  const shape = model.graph.outputs[0]!.type!.shape!;
  const dims = shape.map((d) => (d === "batch" ? BATCH : d === "seq" ? SEQ : (d as number)));
  const d = registry[kind].defaults as unknown as Record<string, number>;
  const want: Record<ModelKind, number[]> = {
    mlp: [BATCH, d.outFeatures!],
    bert: [BATCH, SEQ, d.hidden!],
    vit: [BATCH, d.classes!],
    llama: [BATCH, SEQ, d.vocab!],
  };
  expect(dims).to.deep.equal(want[kind]);
  return dims;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

describe("models: builders run in onnxruntime", () => {
  for (const kind of MODEL_KINDS) {
    for (const dtype of ["fp32", "fp16"] as const) {
      it(`${kind} ${dtype}: loads, runs, gives finite outputs of the declared shape`, async () => {
        const model = buildModel(kind, { dtype, seed: 3 });
        expect(checkModelInvariants(model)).to.deep.equal([]);
        const bytes = encodeModel(model);
        expect(bytes.byteLength).to.be.below(4 << 20);
        const dims = expectedShape(kind, model);
        const out = await run(bytes, feedsOf(dtype, inputValues(model, 11)));
        expect(out.type).to.equal(dtype === "fp16" ? "float16" : "float32");
        expect([...out.dims]).to.deep.equal(dims);
        const values = toF32(out);
        expect(values.every(Number.isFinite)).to.equal(true);
        expect(values.some((x) => x !== 0)).to.equal(true);
      });
    }

    it(`${kind}: fp16 model computes what the fp32 model computes, within fp16 error`, async () => {
      const m32 = buildModel(kind, { dtype: "fp32", seed: 5 });
      const m16 = buildModel(kind, { dtype: "fp16", seed: 5 });
      const values = inputValues(m32, 13);
      const a = toF32(await run(m32, feedsOf("fp32", values)));
      const b = toF32(await run(m16, feedsOf("fp16", values)));
      expect(maxRelDiff(b, a)).to.be.below(0.01);
    });

    it(`${kind}: same options give byte-identical models, another seed another model`, () => {
      const a = encodeModel(buildModel(kind, { seed: 7 }));
      const b = encodeModel(buildModel(kind, { seed: 7 }));
      const c = encodeModel(buildModel(kind, { seed: 8 }));
      expect(Buffer.compare(a, b)).to.equal(0);
      expect(Buffer.compare(a, c)).to.not.equal(0);
      expect(c.byteLength).to.equal(a.byteLength);
    });

    it(`${kind}: every MatMul/Gemm has a unique, meaningful name`, () => {
      const model = buildModel(kind);
      const names = model.graph.nodes.filter((n) => n.opType === "MatMul" || n.opType === "Gemm").map((n) => n.name);
      expect(names.every((n) => n.length > 0 && !/_\d+$/.test(n))).to.equal(true);
      expect(new Set(names).size).to.equal(names.length);
      const all = model.graph.nodes.map((n) => n.name);
      expect(new Set(all).size).to.equal(all.length);
    });
  }

  it("names layers like the exports they imitate", () => {
    const names = (m: Model) => m.graph.nodes.filter((n) => n.opType === "MatMul" || n.opType === "Gemm").map((n) => n.name);
    expect(names(buildMlp())).to.deep.equal(["layers.0", "layers.1"]);
    expect(names(buildMlp({ useGemm: true, layers: 3 }))).to.deep.equal(["layers.0", "layers.1", "layers.2"]);
    expect(names(buildModel("bert"))).to.deep.equal([
      "encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key", "encoder.layer.0.attention.self.value",
      "encoder.layer.0.attention.self/qk_matmul", "encoder.layer.0.attention.self/av_matmul",
      "encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense",
    ]);
    expect(names(buildModel("vit"))).to.deep.equal([
      "patch_embed.proj", "blocks.0.attn.q_proj", "blocks.0.attn.k_proj", "blocks.0.attn.v_proj",
      "blocks.0.attn/qk_matmul", "blocks.0.attn/av_matmul", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "head",
    ]);
    expect(names(buildLlamaBlock({ layers: 2 }))).to.deep.equal([0, 1].flatMap((i) => [
      `layers.${i}.attn.q_proj`, `layers.${i}.attn.k_proj`, `layers.${i}.attn.v_proj`,
      `layers.${i}.attn/qk_matmul`, `layers.${i}.attn/av_matmul`, `layers.${i}.attn.o_proj`,
      `layers.${i}.mlp.gate_proj`, `layers.${i}.mlp.up_proj`, `layers.${i}.mlp.down_proj`,
    ]).concat(["lm_head"]));
    const ops = buildMlp({ useGemm: true }).graph.nodes.map((n) => n.opType);
    expect(ops).to.deep.equal(["Gemm", "Relu", "Gemm"]);
  });

  it("weights are stored [in, out] for MatMul and [out, in] for Gemm: both MLPs compute the same", async () => {
    const mm = buildMlp({ seed: 2 });
    const gemm = buildMlp({ seed: 2, useGemm: true });
    expect(mm.graph.initializers[0]!.initializer!.dims).to.deep.equal([256, 1024]);
    expect(gemm.graph.initializers[0]!.initializer!.dims).to.deep.equal([1024, 256]);
    const values = inputValues(mm, 1);
    const a = toF32(await run(mm, feedsOf("fp32", values)));
    const b = toF32(await run(gemm, feedsOf("fp32", values)));
    expect(maxRelDiff(a, b)).to.be.below(1e-5);
  });

  it("weights have a unit-preserving scale and a few outlier input channels", () => {
    const init = buildMlp({ seed: 4 }).graph.initializers[0]!.initializer!;
    const [inF, outF] = init.dims as [number, number];
    const w = new Float32Array(init.read().slice().buffer);
    const rowRms = Array.from({ length: inF }, (_, i) => Math.sqrt(w.subarray(i * outF, (i + 1) * outF).reduce((s, x) => s + x * x, 0) / outF));
    const sorted = [...rowRms].sort((a, b) => a - b);
    const median = sorted[inF >> 1]!;
    expect(median).to.be.within(0.8 / Math.sqrt(inF), 1.3 / Math.sqrt(inF));
    const outliers = rowRms.filter((r) => r > 3 * median).length;
    expect(outliers).to.be.within(1, Math.ceil(0.05 * inF));
  });

  for (const embedInputs of [false, true]) {
    it(`llama${embedInputs ? " (token ids)" : ""}: attention is causal: a later token does not change earlier outputs`, async () => {
      const model = buildLlamaBlock({ seed: 9, embedInputs });
      const bytes = encodeModel(model);
      const values = inputValues(model, 21);
      const changed = new Map([...values].map(([k, v]) => [k, { dims: v.dims, data: v.data.slice() }]));
      const pos = 5;
      const { dims, data } = changed.values().next().value!;
      const per = dims.length === 3 ? dims[2]! : 1; // hidden per position, or one id
      for (let bIdx = 0; bIdx < BATCH; bIdx++) {
        for (let j = 0; j < per; j++) {
          const at = (bIdx * SEQ + pos) * per + j;
          if (data instanceof BigInt64Array) data[at] = (data[at]! + 17n) % 512n;
          else data[at] = data[at]! + 1;
        }
      }
      const a = toF32(await run(bytes, feedsOf("fp32", values)));
      const b = toF32(await run(bytes, feedsOf("fp32", changed)));
      const vocab = 512;
      for (let bIdx = 0; bIdx < BATCH; bIdx++) {
        for (let s = 0; s < SEQ; s++) {
          const off = (bIdx * SEQ + s) * vocab;
          const diff = maxRelDiff(b.subarray(off, off + vocab), a.subarray(off, off + vocab));
          if (s < pos) expect(diff, `position ${s}`).to.be.below(1e-6);
          else expect(diff, `position ${s}`).to.be.above(1e-3);
        }
      }
    });
  }

  it("llama: grouped-query attention, several layers and other sequence lengths run", async () => {
    const model = buildLlamaBlock({ kvHeads: 2, layers: 2, seed: 1 });
    expect(model.graph.initializers.find((v) => v.name === "layers.1.attn.k_proj.weight")!.initializer!.dims).to.deep.equal([256, 128]);
    const session = await ort.InferenceSession.create(encodeModel(model));
    for (const seq of [1, 8, 128]) {
      const x = new ort.Tensor("float32", new Rng(seq).fillNormal(seq * 256), [1, seq, 256]);
      const out = (await session.run({ hidden_states: x })).logits!;
      expect([...out.dims]).to.deep.equal([1, seq, 512]);
      expect(toF32(out).every(Number.isFinite)).to.equal(true);
    }
    await session.release();
  });

  it("vit: image size follows patches and patch size", () => {
    const m = buildModel("vit", { patches: 64, patchSize: 2 });
    expect(vitImageSize({ patches: 64, patchSize: 2 })).to.equal(16);
    expect(m.graph.inputs[0]!.type!.shape).to.deep.equal(["batch", 3, 16, 16]);
    expect(() => buildModel("vit", { patches: 15 })).to.throw(/perfect square/);
  });

  describe("files", () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), "vnmc-models-"));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it("a model written with external data loads from its path and computes the same", async () => {
      const model = buildLlamaBlock({ seed: 2, dtype: "fp16" });
      const path = join(dir, "llama.onnx");
      const r = writeModelFile(model, path, { externalData: true });
      expect(r.dataPath).to.equal(`${path}.data`);
      expect(statSync(path).size).to.be.below(64 << 10);
      expect(r.dataBytes).to.be.above(1 << 20);
      const feeds = feedsOf("fp16", inputValues(model, 3));
      const session = await ort.InferenceSession.create(path);
      const fromFile = toF32((await session.run(feeds)).logits!);
      await session.release();
      const inMemory = toF32(await run(model, feeds));
      expect(Buffer.compare(Buffer.from(fromFile.buffer), Buffer.from(inMemory.buffer))).to.equal(0);
    });

    const cli = (...args: string[]) => spawnSync(process.execPath, ["dist/models/cli.js", ...args], { encoding: "utf8" });

    it("the CLI writes a model and rejects bad usage with exit 2", () => {
      const out = join(dir, "sub", "vit.onnx");
      const ok = cli("vit", "-o", out, "--dtype", "fp16", "--seed", "4", "--hidden", "96", "--external-data");
      expect(ok.status, ok.stderr).to.equal(0);
      expect(existsSync(out) && existsSync(`${out}.data`)).to.equal(true);
      for (const bad of [[], ["resnet", "-o", out], ["mlp"], ["mlp", "-o", out, "--dtype", "bf16"], ["mlp", "-o", out, "--heads", "4"],
        ["mlp", "-o", out, "--hidden", "x"], ["bert", "-o", out, "--heads", "3"]]) {
        const r = cli(...bad);
        expect(r.status, bad.join(" ")).to.equal(2);
        expect(r.stderr.trim().split("\n")).to.have.length(1);
      }
    });
  });
});
