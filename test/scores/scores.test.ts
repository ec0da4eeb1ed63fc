import { expect } from "chai";
import { DataType } from "../../compiler/ir/dtype.js";
import { parseVnm } from "../../compiler/vnm/config.js";
import { type PruneJob, runPruneJob } from "../../compiler/weights/prune-job.js";
import { computeScores, layerOutputError, normalizedNorms, outputErrorPlan, type ScoreKind } from "../../compiler/weights/scores.js";
import { bruteForceBest, checkVnmPattern, denseFromPacked, seededRandom } from "../support/vnm-reference.js";

/** The scores by their definitions (background.md), in float64, straight from W and the norms. */
function referenceScores(W: Float32Array, out: number, inF: number, kind: ScoreKind, norms: Float32Array): Float64Array {
  const s = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < inF; k++) {
      const a = Math.abs(W[o * inF + k]!);
      if (kind === "magnitude") s[o * inF + k] = a;
      else if (kind === "wanda") s[o * inF + k] = a * norms[k]!;
      else {
        let col = 0, row = 0;
        for (let j = 0; j < out; j++) col += Math.abs(W[j * inF + k]!);
        for (let j = 0; j < inF; j++) row += Math.abs(W[o * inF + j]!);
        s[o * inF + k] = ((col > 0 ? a / col : 0) + (row > 0 ? a / row : 0)) * Math.sqrt(norms[k]!);
      }
    }
  }
  return s;
}

function randomCase(seed: number, out: number, inF: number): { W: Float32Array; norms: Float32Array } {
  const r = seededRandom(seed);
  const W = Float32Array.from({ length: out * inF }, () => (r() - 0.5) * 2);
  // Norms spread over two orders of magnitude, like real activations with outlier channels.
  const norms = Float32Array.from({ length: inF }, () => Math.exp(r() * 4.6));
  return { W, norms };
}

function job(W: Float32Array, out: number, inF: number, vnm: string, kind: ScoreKind, norms?: Float32Array, rows?: Float32Array, rowCount?: number): PruneJob {
  return {
    source: { kind: "bytes", bytes: new Uint8Array(W.buffer.slice(0)) },
    baseType: DataType.FLOAT, baseDims: [out, inF], config: parseVnm(vnm),
    recipe: { baseName: "W", transposed: false, dataType: DataType.FLOAT, scale: 1, outFeatures: out, inFeatures: inF },
    scoring: { kind, norms, rows, rowCount },
  };
}

function unpack(o: ReturnType<typeof runPruneJob>, out: number, inF: number, vnm: string): Float32Array {
  const { v, m } = parseVnm(vnm);
  return denseFromPacked({ values: new Float32Array(o.values.slice().buffer), columns: o.columns, meta: o.meta, outFeatures: out, inFeatures: inF, v, m });
}

describe("importance scores (magnitude, Wanda, RIA)", () => {
  it("match their definitions on small matrices (float32 rounding of the scaled norms)", () => {
    for (const [seed, out, inF] of [[1, 5, 7], [2, 8, 12], [3, 1, 4], [4, 16, 9]] as const) {
      const { W, norms } = randomCase(seed, out, inF);
      W[2] = 0; // a zero weight
      const abs = W.map(Math.abs);
      const scale = Math.max(...norms);
      const scaled = norms.map((n) => n / scale);
      for (const kind of ["magnitude", "wanda", "ria"] as const) {
        const got = computeScores(abs, out, inF, kind, norms);
        const want = referenceScores(W, out, inF, kind, scaled);
        for (let i = 0; i < want.length; i++) expect(got[i], `${kind} #${i}`).to.be.closeTo(want[i]!, 1e-6 * Math.max(1e-30, Math.abs(want[i]!)) + 1e-12);
      }
    }
  });

  it("handle zero rows, zero columns and all-zero norms without NaN", () => {
    const out = 3, inF = 4;
    const W = Float32Array.from([0, 0, 0, 0, 1, 0, -2, 0, 3, 0, 0, 4]); // row 0 and column 1 are zero
    const abs = W.map(Math.abs);
    for (const kind of ["wanda", "ria"] as const) {
      const s = computeScores(abs, out, inF, kind, Float32Array.from([1, 2, 3, 0]));
      expect(Array.from(s).every((x) => Number.isFinite(x) && x >= 0), kind).to.equal(true);
      expect(s[0 * inF + 0]).to.equal(0);
      expect(s[2 * inF + 3], `${kind}: a channel never active scores 0`).to.equal(0);
    }
    expect(Array.from(normalizedNorms(new Float32Array(3)))).to.deep.equal([1, 1, 1]);
    expect(() => computeScores(abs, out, inF, "wanda")).to.throw(/needs 4 activation norms/);
    expect(() => normalizedNorms(Float32Array.from([1, NaN]))).to.throw(/finite/);
  });

  it("prune to the brute-force optimum of the chosen score, keeping the exact raw weights", () => {
    for (const [seed, out, inF, vnm] of [[11, 8, 12, "8:2:6"], [12, 16, 10, "8:2:5"], [13, 8, 16, "8:2:8"], [14, 12, 8, "8:2:4"]] as const) {
      const { W, norms } = randomCase(seed, out, inF);
      const { v, m } = parseVnm(vnm);
      for (const kind of ["magnitude", "wanda", "ria"] as const) {
        const o = runPruneJob(job(W, out, inF, vnm, kind, norms));
        expect(o.score).to.equal(kind);
        // The job's selection scores are float32; the optimum over them, found by enumeration.
        const score32 = computeScores(W.map(Math.abs), out, inF, kind, norms);
        expect(o.keptScore, `${kind} ${vnm}`).to.be.closeTo(bruteForceBest(score32, out, inF, v, m), 1e-9 * o.totalScore);
        const dense = unpack(o, out, inF, vnm);
        expect(checkVnmPattern(dense, out, inF, v, m)).to.deep.equal([]);
        for (let i = 0; i < dense.length; i++) if (dense[i] !== 0) expect(dense[i], `kept weight ${i}`).to.equal(W[i]);
        expect(o.alreadySparse).to.equal(false);
        expect(o.keptMagnitude / o.totalMagnitude).to.be.within(0, 1);
      }
    }
  });

  it("choose differently by score when activations differ across channels", () => {
    // Column 0 has the largest weights but a silent input: Wanda and RIA drop it, magnitude keeps it.
    const out = 8, inF = 8;
    const W = Float32Array.from({ length: out * inF }, (_, i) => (i % inF === 0 ? 10 : 1 + ((i * 7) % 5) / 10));
    const norms = Float32Array.from({ length: inF }, (_, k) => (k === 0 ? 1e-3 : 1));
    const col0 = (kind: ScoreKind) => {
      const o = runPruneJob(job(W, out, inF, "8:2:8", kind, norms));
      return Array.from(o.columns).includes(0);
    };
    expect(col0("magnitude")).to.equal(true);
    expect(col0("wanda")).to.equal(false);
    expect(col0("ria")).to.equal(false);
  });

  it("measure the layer output error ‖X·Wᵀ − X·(W⊙mask)ᵀ‖/‖X·Wᵀ‖ like a plain computation", () => {
    const out = 12, inF = 16, r = 9;
    const { W, norms } = randomCase(21, out, inF);
    const rnd = seededRandom(5);
    const X = Float32Array.from({ length: r * inF }, () => rnd() - 0.5);
    const o = runPruneJob(job(W, out, inF, "8:2:8", "wanda", norms, X, r));
    const P = unpack(o, out, inF, "8:2:8");
    let e2 = 0, y2 = 0;
    for (let t = 0; t < r; t++) {
      for (let i = 0; i < out; i++) {
        let y = 0, yp = 0;
        for (let k = 0; k < inF; k++) {
          y += X[t * inF + k]! * W[i * inF + k]!;
          yp += X[t * inF + k]! * P[i * inF + k]!;
        }
        y2 += y * y;
        e2 += (y - yp) ** 2;
      }
    }
    expect(o.outputError!.rows).to.equal(r);
    expect(o.outputError!.relError).to.be.closeTo(Math.sqrt(e2 / y2), 1e-6);
    expect(layerOutputError(W, out, inF, new Int32Array(out * 2 * 2).fill(-1), 4, X, r), "everything pruned").to.be.closeTo(1, 1e-12);
    // On every 5th output channel only (channels 0, 5, 10), as large layers are measured.
    let e2s = 0, y2s = 0;
    for (let t = 0; t < r; t++) {
      for (let i = 0; i < out; i += 5) {
        let y = 0, yp = 0;
        for (let k = 0; k < inF; k++) {
          y += X[t * inF + k]! * W[i * inF + k]!;
          yp += X[t * inF + k]! * P[i * inF + k]!;
        }
        y2s += y * y;
        e2s += (y - yp) ** 2;
      }
    }
    expect(layerOutputError(W, out, inF, o.src!, 2 * Math.ceil(inF / 8), X, r, 5)).to.be.closeTo(Math.sqrt(e2s / y2s), 1e-6);
  });

  it("bound the output error's work on large layers by measuring every s-th output channel", () => {
    expect(outputErrorPlan(256, 256, 704)).to.deep.equal({ rows: 128, stride: 1, channels: 256 });
    expect(outputErrorPlan(100, 256, 704)).to.deep.equal({ rows: 100, stride: 1, channels: 256 });
    expect(outputErrorPlan(256, 4096, 4096)).to.deep.equal({ rows: 128, stride: 64, channels: 64 });
    expect(outputErrorPlan(10, 11008, 4096)).to.deep.equal({ rows: 10, stride: 14, channels: 787 });
  });
});
