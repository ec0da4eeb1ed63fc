import { expect } from "chai";
import { Tensor } from "onnxruntime-common";
import { decodeF16, encodeF16 } from "../../compiler/numeric/half.js";
import { NativeSession } from "../../compiler/runtime/native-session.js";
import { encodeModel } from "../../compiler/serde/write.js";
import { requireNative } from "../support/native.js";
import { type ColumnKind, type LayerSpec, layerModel, randomLayer, reference, TestRng } from "../support/packed-layer.js";

/** Random shapes, V, M, types, column kinds, padding, row_index, bias and batch dims, every output checked. */
function randomSpec(rng: TestRng, i: number): { spec: LayerSpec; batch: number[] } {
  const V = rng.pick([8, 16, 32, 64, 128]);
  const M = rng.pick([4, 5, 6, 8, 12, 16, 32]);
  const act = i % 4 === 3 ? "float16" : "float32";
  const values = act === "float16" ? "float16" : rng.pick(["float32", "float32", "float16", "bfloat16"] as const);
  // K and N often not multiples of M and V (partial groups and blocks: padding).
  const K = rng.pick([M * (1 + rng.int(12)), 1 + rng.int(200), 3, 4 * M + 1]);
  const N = rng.pick([V, V * (1 + rng.int(3)), 1 + rng.int(150), V + 1]);
  const columns: ColumnKind = rng.pick(["windowed", "windowed", "permuted", "arbitrary"]);
  const batch = rng.pick([[1], [3], [17], [64], [2, 5], [1, 1, 7], [4, 16], []]);
  return { spec: { K, N, V, M, act, values, columns, rowIndex: rng.next() < 0.5, bias: rng.next() < 0.5 }, batch };
}

describe("runtime: the CPU kernel (through the Node addon) vs a dense reference", function () {
  this.timeout(180_000);
  before(function () {
    requireNative(this);
  });

  const CASES = 64;
  // "auto": AVX-512 or AVX2/FMA where the CPU has it; "avx2" / "portable": VNMC_CPU_ISA caps the ISA
  // (read at kernel creation; avx2 runs the portable kernel on a CPU without AVX2).
  for (const isa of ["auto", "avx2", "portable"] as const) it(`${CASES} random layers (${isa} ISA): every output element within float rounding of A·Wᵀ + bias`, async () => {
    const rng = new TestRng(isa === "auto" ? 2026 : isa === "portable" ? 2027 : 2028);
    if (isa !== "auto") process.env.VNMC_CPU_ISA = isa;
    try {
      await randomCases(rng, CASES);
    } finally {
      delete process.env.VNMC_CPU_ISA;
    }
  });

  async function randomCases(rng: TestRng, CASES: number): Promise<void> {
    const seen = new Set<string>();
    for (let i = 0; i < CASES; i++) {
      const { spec, batch } = randomSpec(rng, i);
      const layer = randomLayer(spec, rng);
      const rows = batch.reduce((a, b) => a * b, 1);
      const A32 = Float32Array.from({ length: rows * spec.K }, () => rng.normal());
      let feed: Tensor, Aexact: Float32Array = A32;
      if (spec.act === "float16") {
        const bits = encodeF16(A32);
        Aexact = decodeF16(bits);
        feed = new Tensor("float16", bits, [...batch, spec.K]);
      } else feed = new Tensor("float32", A32, [...batch, spec.K]);
      const what = `case ${i}: ${JSON.stringify(spec)} batch ${JSON.stringify(batch)}`;
      const s = await NativeSession.create(encodeModel(layerModel(layer, batch.length)), { intraOpNumThreads: 1 + (i % 2), logSeverityLevel: 3 });
      const out = (await s.run({ A: feed })).Y!;
      await s.release();
      expect(out.dims, what).to.deep.equal([...batch, spec.N]);
      const got = spec.act === "float16" ? decodeF16(out.data as Uint16Array) : (out.data as Float32Array);
      const { y, mag } = reference(layer, Aexact, rows);
      // fp32 accumulation over ≤ 2G + 1 terms, plus the final rounding to fp16 for fp16 outputs.
      const accum = (2 * layer.G + 2) * 2 ** -23;
      for (let j = 0; j < y.length; j++) {
        const tol = accum * mag[j]! + (spec.act === "float16" ? 2 ** -11 * Math.abs(y[j]!) + 6e-8 : 1e-30);
        if (!(Math.abs(got[j]! - y[j]!) <= tol)) {
          expect.fail(`${what}: element ${j} is ${got[j]}, reference ${y[j]} (tolerance ${tol})`);
        }
      }
      seen.add(`${spec.act}/${spec.values}`).add(spec.columns).add(`rowIndex=${spec.rowIndex}`).add(`bias=${spec.bias}`).add(`rank=${batch.length + 1}`);
      if (spec.K % spec.M) seen.add("partial group");
      if (spec.N % spec.V) seen.add("partial block");
    }
    // The random cases covered every kind of input at least once.
    for (const k of ["float32/float32", "float32/float16", "float32/bfloat16", "float16/float16", "windowed", "permuted", "arbitrary",
      "rowIndex=true", "rowIndex=false", "bias=true", "bias=false", "rank=1", "rank=2", "rank=3", "rank=4", "partial group", "partial block"]) {
      expect([...seen], k).to.include(k);
    }
  }

  it("gives the same bits with 1 and 2 intra-op threads and on repeated runs", async () => {
    const rng = new TestRng(7);
    const layer = randomLayer({ K: 512, N: 384, V: 64, M: 8, act: "float32", values: "float32", columns: "windowed", rowIndex: true, bias: true }, rng);
    const bytes = encodeModel(layerModel(layer, 1));
    for (const T of [1, 5, 40]) {
      const A = new Tensor("float32", Float32Array.from({ length: T * 512 }, () => rng.normal()), [T, 512]);
      const s1 = await NativeSession.create(bytes, { intraOpNumThreads: 1 });
      const s2 = await NativeSession.create(bytes, { intraOpNumThreads: 2 });
      const y1 = (await s1.run({ A })).Y!.data as Float32Array;
      const y2 = (await s2.run({ A })).Y!.data as Float32Array;
      const y3 = (await s2.run({ A })).Y!.data as Float32Array;
      await s1.release();
      await s2.release();
      expect(Buffer.from(y1.buffer).equals(Buffer.from(y2.buffer)), `T=${T}`).to.equal(true);
      expect(Buffer.from(y2.buffer).equals(Buffer.from(y3.buffer)), `T=${T}`).to.equal(true);
    }
  });
});
