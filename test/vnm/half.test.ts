import { expect } from 'chai';
import { mulberry32 } from "../../compiler/seeded.js";
import {
  bf16BitsToF32,
  decodeBf16,
  decodeF16,
  encodeBf16,
  encodeF16,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
} from '../../compiler/numeric/half.js';

/** fp16 value from its fields, written independently of half.ts. */
function f16Reference(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function f32FromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}

function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

/** Nearest fp16 by search over all finite fp16 values, ties to even mantissa; independent of half.ts. */
function nearestF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const negative = x < 0 || Object.is(x, -0);
  const a = Math.abs(x);
  const sign = negative ? 0x8000 : 0;
  if (a >= 65520) return sign | 0x7c00; // halfway between the largest finite (65504) and 2^16
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    // largest bits with value <= a
    const mid = (lo + hi + 1) >> 1;
    if (f16Reference(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  const below = lo;
  if (f16Reference(below) === a || below === 0x7bff) return sign | below;
  const above = below + 1;
  const dBelow = a - f16Reference(below);
  const dAbove = f16Reference(above) - a;
  if (dBelow < dAbove) return sign | below;
  if (dAbove < dBelow) return sign | above;
  return sign | ((below & 1) === 0 ? below : above);
}


describe('numeric/half', () => {
  it('decodes every fp16 bit pattern like the field formula, and encodes it back', () => {
    const all = new Uint16Array(65536);
    for (let h = 0; h < 65536; h++) all[h] = h;
    const decoded = decodeF16(all);
    const encoded = encodeF16(decoded);
    const failures: string[] = [];
    const fail = (h: number, what: string) => failures.length < 10 && failures.push(`0x${h.toString(16)}: ${what}`);
    for (let h = 0; h < 65536; h++) {
      const expected = f16Reference(h);
      const scalar = f16BitsToF32(h);
      if (Number.isNaN(expected)) {
        if (!Number.isNaN(scalar) || !Number.isNaN(decoded[h]!)) fail(h, 'NaN decodes to a number');
        const back = encoded[h]!;
        if (!((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0)) fail(h, `NaN encodes back to 0x${back.toString(16)}`);
        if ((back & 0x8000) !== (h & 0x8000)) fail(h, 'NaN loses its sign');
      } else {
        if (!Object.is(scalar, expected) || !Object.is(decoded[h], expected)) fail(h, `decodes to ${scalar}, not ${expected}`);
        if (encoded[h] !== h || f32ToF16Bits(scalar) !== h) fail(h, `encodes back to 0x${encoded[h]!.toString(16)}`);
      }
    }
    expect(failures).to.deep.equal([]);
  });

  it('keeps NaN payload bits through decode', () => {
    const bits = new Uint16Array([0x7c01, 0xfe55, 0x7d00]);
    const out = new Uint32Array(decodeF16(bits).buffer);
    expect([...out]).to.deep.equal([0x7f802000, 0xffcaa000, 0x7fa00000]);
  });

  it('encodes known values to fp16 with round to nearest even', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00], // halfway to 2^16: ties to even overflows to inf
      [1e9, 0x7c00],
      [-Infinity, 0xfc00],
      [Infinity, 0x7c00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway to zero: ties to even
      [2 ** -25 * 1.0000001, 0x0001],
      [3 * 2 ** -25, 0x0002], // halfway between 1 and 2 subnormal steps: to even
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up from the largest subnormal into the normals
      [1023 * 2 ** -24, 0x03ff],
      [1 + 2 ** -11, 0x3c00], // halfway: to even
      [1 + 3 * 2 ** -11, 0x3c02], // halfway: to even (up)
      [1 + 2 ** -11 + 2 ** -20, 0x3c01],
      [0.1, 0x2e66],
      [-3.14159, 0xc248],
    ];
    for (const [x, bits] of cases) expect(f32ToF16Bits(x), `${x}`).to.equal(bits);
    const n = f32ToF16Bits(NaN);
    expect((n & 0x7c00) === 0x7c00 && (n & 0x3ff) !== 0).to.equal(true);
    // A float32 NaN whose payload lives only in the low bits must not become inf.
    const lowNaN = encodeF16(new Float32Array(new Uint32Array([0x7f800001]).buffer))[0]!;
    expect((lowNaN & 0x7c00) === 0x7c00 && (lowNaN & 0x3ff) !== 0).to.equal(true);
  });

  it('encodes random float32 values like an independent nearest-value search', () => {
    const random = mulberry32(7);
    const values = new Float32Array(4000);
    for (let i = 0; i < values.length; i++) {
      // Exponents around the fp16 range, including subnormals and overflow.
      const exp = Math.floor(random() * 50) - 30;
      values[i] = (random() < 0.5 ? -1 : 1) * (1 + random()) * 2 ** exp;
    }
    const bulk = encodeF16(values);
    for (let i = 0; i < values.length; i++) {
      const expected = nearestF16(values[i]!);
      expect(bulk[i], `${values[i]}`).to.equal(expected);
      expect(f32ToF16Bits(values[i]!)).to.equal(expected);
    }
  });

  it('round trips every bf16 bit pattern (NaN stays NaN)', () => {
    const all = new Uint16Array(65536);
    for (let h = 0; h < 65536; h++) all[h] = h;
    const decoded = decodeBf16(all);
    const bits = new Uint32Array(decoded.buffer);
    const encoded = encodeBf16(decoded);
    const failures: string[] = [];
    const fail = (h: number, what: string) => failures.length < 10 && failures.push(`0x${h.toString(16)}: ${what}`);
    for (let h = 0; h < 65536; h++) {
      if (bits[h] !== (h << 16) >>> 0) fail(h, 'bulk decode changed the bits');
      const value = bf16BitsToF32(h);
      if (Number.isNaN(value)) {
        if (!((encoded[h]! & 0x7f80) === 0x7f80 && (encoded[h]! & 0x7f) !== 0)) fail(h, 'NaN does not stay NaN');
      } else {
        if (!Object.is(value, f32FromBits(h << 16))) fail(h, `decodes to ${value}`);
        if (encoded[h] !== h || f32ToBf16Bits(value) !== h) fail(h, `encodes back to 0x${encoded[h]!.toString(16)}`);
      }
    }
    expect(failures).to.deep.equal([]);
  });

  it('encodes bf16 with round to nearest even', () => {
    const cases: Array<[number, number]> = [
      [0x3f800000, 0x3f80], // 1
      [0x3f808000, 0x3f80], // halfway, even stays
      [0x3f818000, 0x3f82], // halfway, odd rounds up
      [0x3f808001, 0x3f81],
      [0x3f807fff, 0x3f80],
      [0x7f7fffff, 0x7f80], // max float rounds to inf
      [0xff800000, 0xff80],
      [0x80000000, 0x8000],
      [0x00000001, 0x0000], // tiny subnormal rounds to zero
    ];
    for (const [f32, bf16] of cases) {
      expect(f32ToBf16Bits(f32FromBits(f32)), f32.toString(16)).to.equal(bf16);
      expect(encodeBf16(new Float32Array(new Uint32Array([f32]).buffer))[0]).to.equal(bf16);
    }
    const lowNaN = encodeBf16(new Float32Array(new Uint32Array([0x7f800001]).buffer))[0]!;
    expect((lowNaN & 0x7f80) === 0x7f80 && (lowNaN & 0x7f) !== 0).to.equal(true);
    expect(f32Bits(bf16BitsToF32(0x4049))).to.equal(0x40490000);
  });
});
