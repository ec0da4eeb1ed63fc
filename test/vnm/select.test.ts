import { expect } from 'chai';
import type { VnmConfig } from '../../compiler/vnm/config.js';
import { selectionSizes, selectVnm, type SelectionRule, type VnmSelection } from '../../compiler/vnm/select.js';
import { createSearchKernels, D_STRIDE } from '../../compiler/vnm/select-kernels.js';
import { bruteForceBest, bruteForceGroups, seededRandom } from '../support/vnm-reference.js';

const cfg = (v: number, m: number): VnmConfig => ({ v, n: 2, m });

/** Scores: 'float' uniform, 'int' small integers (exact sums, many ties), 'heavy' |gaussian| * lognormal. */
function scores(n: number, seed: number, kind: 'float' | 'int' | 'heavy' | 'wild' = 'float'): Float32Array {
  const random = seededRandom(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (kind === 'int') out[i] = Math.floor(random() * 4);
    else if (kind === 'wild') out[i] = random() < 0.1 ? 0 : 2 ** (200 * random() - 100);
    else if (kind === 'heavy') out[i] = Math.abs(Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(6.283 * random())) * Math.exp(2 * (random() - 0.5));
    else out[i] = random();
  }
  return out;
}

/** Structural checks every selection must pass; returns violations. */
function structuralProblems(sel: VnmSelection): string[] {
  const problems: string[] = [];
  const { outFeatures: N, inFeatures: K, v, m, rows: R, groups: G, columns, src, meta } = sel;
  const metaBytes = Math.ceil(G / 2);
  if (R !== Math.ceil(N / v) * v || G !== Math.ceil(K / m)) problems.push('bad R or G');
  if (columns.length !== (R / v) * G * 4 || src.length !== R * 2 * G || meta.length !== R * metaBytes) problems.push('bad lengths');
  for (let b = 0; b < R / v; b++) {
    for (let g = 0; g < G; g++) {
      const cols = [...columns.subarray((b * G + g) * 4, (b * G + g) * 4 + 4)];
      if (cols.some((c) => c < 0 || c >= K)) problems.push(`block ${b} group ${g}: column out of range ${cols}`);
      for (let p = 0; p < 3; p++) if (cols[p]! > cols[p + 1]!) problems.push(`block ${b} group ${g}: not ascending ${cols}`);
      if (K >= 4 && new Set(cols).size !== 4) problems.push(`block ${b} group ${g}: duplicate columns ${cols}`);
      const realInGroup = Math.min(m, K - g * m);
      const realCols = [...new Set(cols.filter((c) => c >= g * m && c < g * m + m))];
      if (realCols.length !== Math.min(4, realInGroup)) problems.push(`block ${b} group ${g}: ${realCols.length} real columns ${cols}`);
      for (let r = b * v; r < (b + 1) * v; r++) {
        const byte = meta[r * metaBytes + (g >> 1)]!;
        const nibble = (g & 1) === 0 ? byte & 15 : byte >> 4;
        const p0 = nibble & 3;
        const p1 = nibble >> 2;
        if (!(p0 < p1)) problems.push(`row ${r} group ${g}: invalid code ${nibble}`);
        const s0 = src[r * 2 * G + 2 * g]!;
        const s1 = src[r * 2 * G + 2 * g + 1]!;
        if (r >= N) {
          if (s0 !== -1 || s1 !== -1) problems.push(`padding row ${r} has src ${s0},${s1}`);
          continue;
        }
        const kept = [s0, s1].filter((s) => s >= 0).length;
        if (kept !== Math.min(2, realInGroup)) problems.push(`row ${r} group ${g}: keeps ${kept}`);
        for (const [s, p] of [
          [s0, p0],
          [s1, p1],
        ] as const) {
          if (s >= 0 && s !== cols[p]) problems.push(`row ${r} group ${g}: src ${s} but column ${cols[p]}`);
          if (s >= 0 && (s < g * m || s >= g * m + m)) problems.push(`row ${r} group ${g}: src ${s} outside the group`);
          if (s < 0 && realCols.includes(cols[p]!) && cols.filter((c) => c === cols[p]).length === 1) {
            problems.push(`row ${r} group ${g}: a real slot has src -1`);
          }
        }
        if (s0 >= 0 && s0 === s1) problems.push(`row ${r} group ${g}: keeps column ${s0} twice`);
      }
    }
    if (G % 2 === 1) {
      for (let r = b * v; r < (b + 1) * v; r++) if (meta[r * metaBytes + metaBytes - 1]! >> 4 !== 0) problems.push(`row ${r}: high nibble set`);
    }
  }
  return problems;
}

/** Sum of the scores at the kept positions, recomputed from src. */
function keptFromSrc(sel: VnmSelection, score: Float32Array): number {
  let sum = 0;
  for (let r = 0; r < sel.outFeatures; r++) {
    for (let j = 0; j < 2 * sel.groups; j++) {
      const s = sel.src[r * 2 * sel.groups + j]!;
      if (s >= 0) sum += score[r * sel.inFeatures + s]!;
    }
  }
  return sum;
}

describe('vnm/select', () => {
  const shapes: Array<[v: number, m: number, out: number, inF: number]> = [];
  for (const v of [8, 16]) {
    for (const m of [4, 5, 6, 7, 8, 9, 16]) {
      shapes.push([v, m, v + 3, 2 * m + 3]); // partial last block and group (3 real columns)
      shapes.push([v, m, 2 * v - 1, 3 * m + 1]); // one real column in the last group
      shapes.push([v, m, v, 2 * m]); // exact multiples
    }
  }

  it('finds the brute-force optimum (exhaustive) and never beats it with colsum', () => {
    let seed = 1;
    for (const [v, m, out, inF] of shapes) {
      for (const kind of ['float', 'heavy'] as const) {
        const score = scores(out * inF, seed++, kind);
        const best = bruteForceBest(score, out, inF, v, m);
        const exhaustive = selectVnm(score, out, inF, cfg(v, m), 'exhaustive');
        const colsum = selectVnm(score, out, inF, cfg(v, m), 'colsum');
        const label = `${v}:2:${m} ${out}x${inF} ${kind}`;
        expect(exhaustive.keptScore, label).to.be.closeTo(best, 1e-9 * best);
        expect(keptFromSrc(exhaustive, score), label).to.be.closeTo(best, 1e-9 * best);
        expect(colsum.keptScore, label).to.be.at.most(exhaustive.keptScore * (1 + 1e-12));
        expect(structuralProblems(exhaustive), label).to.deep.equal([]);
        expect(structuralProblems(colsum), label).to.deep.equal([]);
        let total = 0;
        for (const x of score) total += x;
        expect(exhaustive.totalScore).to.be.closeTo(total, 1e-9 * total);
      }
    }
  });

  it('breaks ties towards the lexicographically lowest subset (integer scores, exact sums)', () => {
    let seed = 100;
    for (const [v, m, out, inF] of shapes) {
      const score = scores(out * inF, seed++, 'int');
      const sel = selectVnm(score, out, inF, cfg(v, m), 'exhaustive');
      const groups = bruteForceGroups(score, out, inF, v, m);
      const best = groups.reduce((s, g) => s + g.best, 0);
      expect(sel.keptScore, `${v}:2:${m}`).to.equal(best);
      for (const g of groups) {
        if (g.subset === null) continue;
        const at = (g.block * sel.groups + g.group) * 4;
        expect([...sel.columns.subarray(at, at + 4)], `${v}:2:${m} block ${g.block} group ${g.group}`).to.deep.equal(g.subset);
      }
    }
  });

  it('is exact for large M and V (branch and bound against brute force)', () => {
    const cases: Array<[v: number, m: number, out: number, inF: number, kind: 'float' | 'int' | 'heavy']> = [
      [8, 32, 8, 32, 'float'],
      [8, 32, 5, 32, 'int'],
      [8, 20, 8, 40, 'heavy'],
      [16, 12, 16, 24, 'float'],
      [64, 8, 64, 24, 'float'],
      [64, 8, 70, 16, 'int'],
      [128, 5, 128, 10, 'heavy'],
      [32, 16, 33, 16, 'float'],
    ];
    let seed = 500;
    for (const [v, m, out, inF, kind] of cases) {
      const score = scores(out * inF, seed++, kind);
      const sel = selectVnm(score, out, inF, cfg(v, m), 'exhaustive');
      const groups = bruteForceGroups(score, out, inF, v, m);
      const best = groups.reduce((s, g) => s + g.best, 0);
      expect(sel.keptScore, `${v}:2:${m} ${kind}`).to.be.closeTo(best, 1e-9 * best);
      if (kind === 'int') {
        for (const g of groups) {
          const at = (g.block * sel.groups + g.group) * 4;
          if (g.subset) expect([...sel.columns.subarray(at, at + 4)]).to.deep.equal(g.subset);
        }
      }
      expect(structuralProblems(sel)).to.deep.equal([]);
    }
  });

  it('is exact on many random block-groups (fuzz against brute force)', () => {
    const random = seededRandom(4242);
    const kinds = ['float', 'int', 'heavy', 'wild'] as const;
    for (let trial = 0; trial < 150; trial++) {
      const v = [8, 16, 32][Math.floor(random() * 3)]!;
      const m = 5 + Math.floor(random() * 8);
      const out = v - Math.floor(random() * 3);
      const inF = m + Math.floor(random() * m);
      const kind = kinds[trial % kinds.length]!;
      const score = scores(out * inF, 10000 + trial, kind);
      const sel = selectVnm(score, out, inF, cfg(v, m), 'exhaustive');
      const groups = bruteForceGroups(score, out, inF, v, m);
      const best = groups.reduce((s, g) => s + g.best, 0);
      const label = `trial ${trial}: ${v}:2:${m} ${out}x${inF} ${kind}`;
      expect(sel.keptScore, label).to.be.closeTo(best, 1e-9 * best);
      if (kind === 'int') {
        for (const g of groups) {
          const at = (g.block * sel.groups + g.group) * 4;
          if (g.subset) expect([...sel.columns.subarray(at, at + 4)], label).to.deep.equal(g.subset);
        }
      }
    }
  });

  it('runs the WebAssembly kernels here, bit-identical to the JS ones', () => {
    const v = 16;
    const m = 9;
    const wasm = createSearchKernels(v, m);
    const js = createSearchKernels(v, m, false);
    expect(wasm.kind).to.equal('wasm');
    expect(js.kind).to.equal('js');
    const random = seededRandom(31);
    for (let trial = 0; trial < 20; trial++) {
      const nRowsEven = 2 + 2 * Math.floor(random() * (v / 2));
      for (let j = 0; j < m; j++) {
        for (let i = 0; i < v; i++) {
          const x = i < nRowsEven ? (trial % 2 ? Math.floor(random() * 5) : random() * 2 ** (20 * random() - 10)) : 0;
          wasm.s[j * v + i] = x;
          js.s[j * v + i] = x;
        }
      }
      for (let k = 0; k < 10; k++) {
        const cols = [0, 1, 2, 3, 4, 5, 6, 7, 8].sort(() => random() - 0.5).slice(0, 4).sort((x, y) => x - y) as [number, number, number, number];
        expect(wasm.evaluate(...cols, nRowsEven)).to.equal(js.evaluate(...cols, nRowsEven));
      }
      const network = Int32Array.from([0, 1, 2, 3, 0, 2, 1, 3, 1, 2]); // sorts columns 0..3
      const ranks = Int32Array.from([2, 3]);
      wasm.prepareBounds(4, nRowsEven, network, ranks);
      js.prepareBounds(4, nRowsEven, network, ranks);
      for (let t = 0; t < 2; t++) {
        expect(wasm.c0[t]).to.be.closeTo(js.c0[t]!, 1e-9 * js.c0[t]!);
        for (let j = 0; j < 4; j++) expect(wasm.d[t * D_STRIDE + j]).to.be.closeTo(js.d[t * D_STRIDE + j]!, 1e-9 * (1 + js.d[t * D_STRIDE + j]!));
      }
      expect(wasm.rowSpread[0]).to.be.closeTo(js.rowSpread[0]!, 1e-9 * js.rowSpread[0]!);
    }
  });

  it('gives identical selections with the WebAssembly and the JS kernels', () => {
    let seed = 900;
    for (const [v, m, out, inF] of [...shapes, [16, 32, 33, 70] as const, [8, 13, 9, 40] as const]) {
      for (const kind of ['float', 'int', 'wild'] as const) {
        const score = scores(out * inF, seed++, kind);
        const a = selectVnm(score, out, inF, cfg(v, m), 'exhaustive');
        const b = selectVnm(score, out, inF, cfg(v, m), 'exhaustive', { kernels: 'js' });
        expect(a.columns, `${v}:2:${m}`).to.deep.equal(b.columns);
        expect(a.src).to.deep.equal(b.src);
        expect(a.meta).to.deep.equal(b.meta);
        expect(a.keptScore).to.equal(b.keptScore);
      }
    }
  });

  it('builds valid WebAssembly kernels across V and M (each module is specialised to both)', () => {
    for (const v of [8, 64, 256]) {
      for (const m of [4, 5, 6, 7, 8, 9, 13, 16, 32]) expect(createSearchKernels(v, m).kind, `${v}:2:${m}`).to.equal('wasm');
    }
  });

  it('gives identical selections with both kernels on large blocks (whole-block WebAssembly path)', () => {
    const cases: Array<[v: number, m: number, out: number, inF: number]> = [
      [64, 8, 64 * 3 - 1, 8 * 9 + 3],
      [64, 7, 128, 7 * 6],
      [128, 12, 130, 12 * 3 + 5],
      [32, 8, 95, 8 * 8],
      [64, 5, 70, 5 * 7 + 2],
      [256, 16, 256, 32],
    ];
    let seed = 2000;
    for (const [v, m, out, inF] of cases) {
      for (const kind of ['float', 'heavy', 'int'] as const) {
        const score = scores(out * inF, seed++, kind);
        for (const rule of ['exhaustive', 'colsum'] as SelectionRule[]) {
          const label = `${v}:2:${m} ${out}x${inF} ${kind} ${rule}`;
          const a = selectVnm(score, out, inF, cfg(v, m), rule);
          const b = selectVnm(score, out, inF, cfg(v, m), rule, { kernels: 'js' });
          expect(a.columns, label).to.deep.equal(b.columns);
          expect(a.src, label).to.deep.equal(b.src);
          expect(a.meta, label).to.deep.equal(b.meta);
          expect(a.keptScore, label).to.equal(b.keptScore);
          expect(a.totalScore, label).to.equal(b.totalScore);
          expect(structuralProblems(a), label).to.deep.equal([]);
        }
      }
    }
  });

  it('writes into caller buffers when they are long enough, with the same results', () => {
    const shapes: Array<[v: number, m: number, out: number, inF: number]> = [
      [16, 8, 16 * 3 - 5, 8 * 5 + 3], // odd group count, padding rows
      [64, 8, 64, 64],
      [8, 5, 9, 11],
    ];
    let seed = 3000;
    for (const [v, m, out, inF] of shapes) {
      const sizes = selectionSizes(out, inF, cfg(v, m));
      for (const kernels of ['auto', 'js'] as const) {
        for (const rule of ['exhaustive', 'colsum'] as SelectionRule[]) {
          const score = scores(out * inF, seed++, 'heavy');
          const fresh = selectVnm(score, out, inF, cfg(v, m), rule, { kernels });
          expect(sizes).to.deep.equal({ src: fresh.src.length, columns: fresh.columns.length, meta: fresh.meta.length });
          // Stale contents everywhere, longer than needed.
          const buffers = {
            src: new Int32Array(sizes.src + 5).fill(77),
            columns: new Int32Array(sizes.columns + 1).fill(-9),
            meta: new Uint8Array(sizes.meta + 3).fill(0xff),
          };
          const sel = selectVnm(score, out, inF, cfg(v, m), rule, { kernels, buffers });
          expect(sel.src.buffer).to.equal(buffers.src.buffer);
          expect(sel.columns.buffer).to.equal(buffers.columns.buffer);
          expect(sel.meta.buffer).to.equal(buffers.meta.buffer);
          expect(sel.src.length).to.equal(sizes.src);
          expect(sel).to.deep.equal(fresh);
          expect(buffers.src[sizes.src]).to.equal(77); // past the view: left alone
          expect(buffers.meta[sizes.meta]).to.equal(0xff);
          // Reused for another weight, then too short ones are ignored.
          const again = selectVnm(scores(out * inF, seed++, 'float'), out, inF, cfg(v, m), rule, { kernels, buffers });
          expect(structuralProblems(again)).to.deep.equal([]);
          const short = { src: new Int32Array(sizes.src - 1), meta: new Uint8Array(1) };
          const other = selectVnm(score, out, inF, cfg(v, m), rule, { kernels, buffers: short });
          expect(other.src.buffer).to.not.equal(short.src.buffer);
          expect(other).to.deep.equal(fresh);
        }
      }
    }
  });

  it('reports the first bad score in a large block like the per-group path does', () => {
    const out = 70;
    const inF = 64;
    for (const [at, bad] of [[0, NaN], [65 * 64 + 63, -1], [3 * 64 + 40, -Infinity]] as const) {
      for (const kernels of ['auto', 'js'] as const) {
        const score = scores(out * inF, 11, 'float');
        score[at] = bad;
        expect(() => selectVnm(score, out, inF, cfg(64, 8), 'exhaustive', { kernels }), `${at}`).to.throw(RangeError, `element ${at} is ${bad}`);
      }
    }
    const score = scores(out * inF, 12, 'float');
    score[100] = Infinity;
    for (const kernels of ['auto', 'js'] as const) {
      expect(() => selectVnm(score, out, inF, cfg(64, 8), 'colsum', { kernels })).to.throw(RangeError, /an element is infinite/);
    }
  });

  it('handles fewer than 4 input channels (duplicates allowed) and a single output row', () => {
    for (const K of [1, 2, 3]) {
      for (const m of [4, 8]) {
        for (const rule of ['exhaustive', 'colsum'] as SelectionRule[]) {
          const out = 3;
          const score = scores(out * K, K * 10 + m, 'float');
          const sel = selectVnm(score, out, K, cfg(8, m), rule);
          expect(sel.groups).to.equal(1);
          const cols = [...sel.columns];
          expect(cols.every((c) => c >= 0 && c < K), `K=${K}: ${cols}`).to.equal(true);
          expect([...cols].sort((x, y) => x - y)).to.deep.equal(cols);
          for (let k = 0; k < K; k++) expect(cols, `K=${K}`).to.include(k);
          expect(structuralProblems(sel), `K=${K}`).to.deep.equal([]);
          // Every row keeps its best min(2, K) real weights.
          expect(sel.keptScore).to.be.closeTo(bruteForceBest(score, out, K, 8, m), 1e-12);
        }
      }
    }
    const one = selectVnm(scores(10, 3), 1, 10, cfg(16, 4), 'exhaustive');
    expect(one.rows).to.equal(16);
    expect(structuralProblems(one)).to.deep.equal([]);
  });

  it('pads a group with fewer than 4 real columns with the columns just below it', () => {
    // K = 10, M = 8: group 1 holds columns 8 and 9; padding is 7 and 6.
    const sel = selectVnm(scores(8 * 10, 77), 8, 10, cfg(8, 8), 'exhaustive');
    expect([...sel.columns.subarray(4, 8)]).to.deep.equal([6, 7, 8, 9]);
    for (let r = 0; r < 8; r++) {
      expect([...sel.src.subarray(r * 4 + 2, r * 4 + 4)]).to.deep.equal([8, 9]);
      expect(sel.meta[r]! >> 4).to.equal(2 | (3 << 2));
    }
    // K = 9, M = 8: one real column (8) in group 1; padding 5, 6, 7; rows keep 8 and the lowest padding slot.
    const one = selectVnm(scores(8 * 9, 78), 8, 9, cfg(8, 8), 'exhaustive');
    expect([...one.columns.subarray(4, 8)]).to.deep.equal([5, 6, 7, 8]);
    for (let r = 0; r < 8; r++) {
      expect([...one.src.subarray(r * 4 + 2, r * 4 + 4)]).to.deep.equal([-1, 8]);
      expect(one.meta[r]! >> 4).to.equal(0 | (3 << 2));
    }
  });

  it('prefers real columns and the lower position when scores tie', () => {
    // All-zero scores: the lowest subset, each row keeping positions 0 and 1.
    const zeros = selectVnm(new Float32Array(16 * 16), 16, 16, cfg(16, 8), 'exhaustive');
    expect([...zeros.columns]).to.deep.equal([0, 1, 2, 3, 8, 9, 10, 11]);
    expect([...zeros.meta.subarray(0, 1)]).to.deep.equal([0x44]);
    expect(zeros.keptScore).to.equal(0);
    expect(structuralProblems(zeros)).to.deep.equal([]);
    // A group of 2 real zero columns next to padding: rows keep the real ones.
    const sel = selectVnm(new Float32Array(8 * 6), 8, 6, cfg(8, 4), 'exhaustive');
    expect([...sel.columns.subarray(4, 8)]).to.deep.equal([2, 3, 4, 5]);
    expect([...sel.src.subarray(2, 4)]).to.deep.equal([4, 5]);
  });

  it('takes the lowest subset when every row is constant (all subsets tie)', () => {
    for (const m of [8, 16, 32]) {
      const out = 16;
      const inF = m;
      const score = new Float32Array(out * inF);
      for (let r = 0; r < out; r++) score.fill(r % 3, r * inF, (r + 1) * inF);
      for (const kernels of ['auto', 'js'] as const) {
        const sel = selectVnm(score, out, inF, cfg(8, m), 'exhaustive', { kernels });
        expect([...sel.columns], `M=${m}`).to.deep.equal([0, 1, 2, 3, 0, 1, 2, 3]);
        expect(sel.keptScore).to.equal(bruteForceBest(score, out, inF, 8, m));
      }
    }
  });

  it('is a pure function of its inputs', () => {
    const score = scores(40 * 50, 5, 'heavy');
    const a = selectVnm(score, 40, 50, cfg(16, 7), 'exhaustive');
    const b = selectVnm(score.slice(), 40, 50, cfg(16, 7), 'exhaustive');
    expect(a).to.deep.equal(b);
  });

  it('rejects negative, NaN and infinite scores and mismatched sizes', () => {
    for (const bad of [-1, NaN, Infinity, -0.5]) {
      const score = scores(16 * 8, 9);
      score[37] = bad;
      expect(() => selectVnm(score, 16, 8, cfg(8, 4), 'exhaustive'), `${bad}`).to.throw(RangeError, /finite and non-negative/);
    }
    expect(() => selectVnm(new Float32Array(10), 3, 4, cfg(8, 4))).to.throw(RangeError, /expected 3 x 4/);
    expect(() => selectVnm(new Float32Array(12), 3, 4, cfg(12, 4))).to.throw(/V must be one of/);
  });
});
