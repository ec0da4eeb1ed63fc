import { expect } from 'chai';
import type { VnmConfig } from '../../compiler/vnm/config.js';
import { detectExistingVnm } from '../../compiler/vnm/detect.js';
import { gatherValues, identityRowIndex, isWindowed } from '../../compiler/vnm/pack.js';
import { selectVnm, type VnmSelection } from '../../compiler/vnm/select.js';
import { checkVnmPattern, denseFromPacked, seededRandom } from '../support/vnm-reference.js';

const cfg = (v: number, m: number): VnmConfig => ({ v, n: 2, m });

/** Random float32 weights with some special bit patterns mixed in. */
function weights(n: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = (random() - 0.5) * 4;
  const bits = new Uint32Array(w.buffer);
  if (n > 10) {
    bits[3] = 0x80000000; // -0
    bits[5] = 0x00000001; // smallest subnormal
    bits[7] = 0x7f7fffff; // largest finite
    bits[9] = 0xff7fffff;
  }
  return w;
}

function magnitudes(w: Float32Array): Float32Array {
  return Float32Array.from(w, (x) => Math.abs(x));
}

/** W ⊙ mask, the mask read from src. */
function maskedBySrc(w: Float32Array, sel: VnmSelection): Float32Array {
  const out = new Float32Array(w.length);
  const twoG = 2 * sel.groups;
  for (let r = 0; r < sel.outFeatures; r++) {
    for (let j = 0; j < twoG; j++) {
      const s = sel.src[r * twoG + j]!;
      if (s >= 0) out[r * sel.inFeatures + s] = w[r * sel.inFeatures + s]!;
    }
  }
  return out;
}

function bytesOf(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

describe('vnm/pack', () => {
  const shapes: Array<[v: number, m: number, out: number, inF: number]> = [
    [8, 4, 13, 11],
    [8, 5, 8, 10],
    [16, 8, 20, 37],
    [16, 16, 31, 33],
    [8, 7, 9, 3],
    [8, 9, 7, 1],
    [16, 6, 1, 25],
  ];

  it('unpacks (independent reference) to exactly W ⊙ mask, which has the V:N:M pattern', () => {
    let seed = 1;
    for (const [v, m, out, inF] of shapes) {
      for (const rule of ['exhaustive', 'colsum'] as const) {
        const w = weights(out * inF, seed++);
        const sel = selectVnm(magnitudes(w), out, inF, cfg(v, m), rule);
        const values = new Float32Array(gatherValues(sel, bytesOf(w), 4).buffer);
        const dense = denseFromPacked({
          values,
          columns: sel.columns,
          meta: sel.meta,
          rowIndex: identityRowIndex(out, sel.rows),
          outFeatures: out,
          inFeatures: inF,
          v,
          m,
        });
        const expected = maskedBySrc(w, sel);
        const label = `${v}:2:${m} ${out}x${inF} ${rule}`;
        const mismatches = [...dense.keys()].filter((i) => dense[i] !== expected[i]);
        expect(mismatches, label).to.deep.equal([]);
        expect(checkVnmPattern(dense, out, inF, v, m), label).to.deep.equal([]);
        // Without row_index the same dense W comes back.
        const again = denseFromPacked({ values, columns: sel.columns, meta: sel.meta, outFeatures: out, inFeatures: inF, v, m });
        expect(again).to.deep.equal(dense);
        // The kept magnitudes are the selection's kept score.
        let kept = 0;
        for (const x of expected) kept += Math.abs(x);
        expect(kept, label).to.be.closeTo(sel.keptScore, 1e-9 * Math.max(1, kept));
      }
    }
  });

  it('keeps exact bit patterns for 2-byte elements (fp16/bf16), NaN payloads included', () => {
    const random = seededRandom(9);
    const out = 19;
    const inF = 21;
    const bits = new Uint16Array(out * inF);
    for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(random() * 65536);
    bits[0] = 0x7c01; // NaN with payload
    bits[1] = 0x8000; // -0
    const score = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) score[i] = i < 2 ? 1e6 : random(); // make sure those two are kept
    const sel = selectVnm(score, out, inF, cfg(16, 8), 'exhaustive');
    const values = new Uint16Array(gatherValues(sel, bytesOf(bits), 2).buffer);
    expect(values.length).to.equal(sel.rows * 2 * sel.groups);
    for (let r = 0; r < sel.rows; r++) {
      for (let j = 0; j < 2 * sel.groups; j++) {
        const s = sel.src[r * 2 * sel.groups + j]!;
        expect(values[r * 2 * sel.groups + j]).to.equal(s >= 0 ? bits[r * inF + s] : 0);
      }
    }
    expect([...values.subarray(0, 2)]).to.deep.equal([0x7c01, 0x8000]);
  });

  it('copies 1- and 8-byte elements exactly, from unaligned buffers too', () => {
    const random = seededRandom(11);
    const out = 10;
    const inF = 14;
    const sel = selectVnm(Float32Array.from({ length: out * inF }, () => random()), out, inF, cfg(8, 6), 'exhaustive');
    for (const size of [1, 2, 4, 8] as const) {
      const backing = new Uint8Array(out * inF * size + 1);
      for (let i = 0; i < backing.length; i++) backing[i] = Math.floor(random() * 256);
      const weight = backing.subarray(1); // byteOffset 1: not aligned for 2, 4 or 8 byte views
      const values = gatherValues(sel, weight, size);
      for (let r = 0; r < sel.rows; r++) {
        for (let j = 0; j < 2 * sel.groups; j++) {
          const s = sel.src[r * 2 * sel.groups + j]!;
          const got = [...values.subarray((r * 2 * sel.groups + j) * size, (r * 2 * sel.groups + j + 1) * size)];
          const want = s >= 0 ? [...weight.subarray((r * inF + s) * size, (r * inF + s + 1) * size)] : new Array(size).fill(0);
          expect(got, `size ${size} row ${r} slot ${j}`).to.deep.equal(want);
        }
      }
    }
    expect(() => gatherValues(sel, new Uint8Array(3), 4)).to.throw(RangeError, /expected 10 x 14 x 4/);
    expect(() => gatherValues(sel, new Uint8Array(out * inF * 3), 3 as 4)).to.throw(RangeError, /1, 2, 4 or 8/);
  });

  it('builds the identity row_index', () => {
    expect([...identityRowIndex(5, 8)]).to.deep.equal([0, 1, 2, 3, 4, -1, -1, -1]);
    expect([...identityRowIndex(0, 0)]).to.deep.equal([]);
  });

  it('recognises windowed column indices', () => {
    const sel = selectVnm(Float32Array.from({ length: 16 * 32 }, (_, i) => (i * 7919) % 13), 16, 32, cfg(16, 8), 'exhaustive');
    expect(isWindowed(sel.columns, sel.groups, 8)).to.equal(true);
    const permuted = sel.columns.slice();
    permuted[0] = 31; // group 0 pointing into group 3
    expect(isWindowed(permuted, sel.groups, 8)).to.equal(false);
    // A last group with fewer than 4 real columns borrows padding columns from below: not windowed.
    const padded = selectVnm(new Float32Array(8 * 10), 8, 10, cfg(8, 8), 'exhaustive');
    expect(isWindowed(padded.columns, padded.groups, 8)).to.equal(false);
    expect(isWindowed(new Int32Array(0), 0, 8)).to.equal(true);
  });

  it('detects weights that already have the V:N:M pattern', () => {
    for (const [v, m, out, inF] of shapes) {
      const w = weights(out * inF, 50 + v + m);
      const sel = selectVnm(magnitudes(w), out, inF, cfg(v, m), 'exhaustive');
      const pruned = maskedBySrc(w, sel);
      expect(detectExistingVnm(pruned, out, inF, cfg(v, m)), `${v}:2:${m}`).to.equal(true);
      if (m > 4 && inF >= 4) expect(detectExistingVnm(w, out, inF, cfg(v, m)), `dense ${v}:2:${m}`).to.equal(false);
      // Re-selecting on an already pruned weight keeps every nonzero: packing it is exact.
      const again = selectVnm(magnitudes(pruned), out, inF, cfg(v, m), 'exhaustive');
      expect(maskedBySrc(pruned, again)).to.deep.equal(pruned);
    }
    // A row with 3 nonzeros in one group.
    const three = new Float32Array(8 * 8);
    three[0] = 1;
    three[1] = 2;
    three[2] = 3;
    expect(detectExistingVnm(three, 8, 8, cfg(8, 8))).to.equal(false);
    // Rows with 2 nonzeros each, but 5 distinct columns in the block.
    const five = new Float32Array(8 * 8);
    five[0] = 1;
    five[1] = 1;
    five[8 + 2] = 1;
    five[8 + 3] = 1;
    five[16 + 4] = 1;
    expect(detectExistingVnm(five, 8, 8, cfg(8, 8))).to.equal(false);
    // The same 5 columns split over two blocks are fine.
    const split = new Float32Array(16 * 8);
    split[0] = 1;
    split[1] = 1;
    split[8 + 2] = 1;
    split[8 + 3] = 1;
    split[8 * 8 + 4] = 1;
    expect(detectExistingVnm(split, 16, 8, cfg(8, 8))).to.equal(true);
    // NaN counts as a nonzero.
    const nan = new Float32Array(8 * 4).fill(0);
    nan[0] = NaN;
    nan[1] = NaN;
    nan[2] = NaN;
    expect(detectExistingVnm(nan, 8, 4, cfg(8, 4))).to.equal(false);
  });
});
