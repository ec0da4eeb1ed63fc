/**
 * float16 / bfloat16 <-> float32 conversions.
 *
 * Decoding fp16 goes through a 65536-entry table (built once, on first use) because weight
 * tensors are decoded in bulk and a table load beats bit twiddling in JS. Encoding rounds to
 * nearest, ties to even, like IEEE 754 and every framework that produced the weights.
 * Inputs to the encoders are taken as float32 (a JS number is first rounded to float32).
 */

// Scratch views to move between a float32 and its bits without allocating.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32Bits(f: number): number {
  scratchF32[0] = f;
  return scratchU32[0]!;
}

function bitsToF32(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

/** Decodes one fp16 bit pattern to float32 bits (used to build the table). */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  // Inf or NaN: keep the payload bits so NaN stays NaN with the same payload.
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Subnormal mant * 2^-24: normalise the mantissa into float32's normal range.
    let e = 113; // float32 biased exponent of 2^-14, the fp16 subnormal scale
    let m = mant;
    while ((m & 0x400) === 0) {
      m <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

let f16TableBits: Uint32Array | null = null;
let f16Table: Float32Array | null = null;

/** The fp16 -> float32 table (as bits and as values over one buffer), built on first use. */
function f16DecodeTableBits(): Uint32Array {
  if (f16TableBits === null) {
    const bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) bits[h] = f16BitsToF32Bits(h);
    f16TableBits = bits;
    f16Table = new Float32Array(bits.buffer);
  }
  return f16TableBits;
}

function f16DecodeTable(): Float32Array {
  if (f16Table === null) f16DecodeTableBits();
  return f16Table!;
}

/** fp16 bits (0..65535) -> the float32 value it denotes (as a JS number). */
export function f16BitsToF32(bits: number): number {
  return f16DecodeTable()[bits & 0xffff]!;
}

/** float32 bits -> fp16 bits, round to nearest even; overflow gives inf, NaN stays NaN. */
function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    // NaN: keep the top payload bits and force the quiet bit so it cannot become inf.
    return sign | 0x7c00 | 0x200 | (mant >>> 13);
  }
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is subnormal (or zero): value = full * 2^(exp-150) = (full >> (14 - e)) * 2^-24.
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const full = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let result = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (result & 1) !== 0)) result++;
    return sign | result; // a carry into 0x400 is the smallest normal, encoded correctly
  }
  let result = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (result & 1) !== 0)) result++; // carry may reach inf: correct
  return sign | result;
}

/** float32 value -> fp16 bits, round to nearest even. */
export function f32ToF16Bits(f: number): number {
  return f32BitsToF16Bits(f32Bits(f));
}

/** bf16 bits -> float32 value: bf16 is the top half of a float32. */
export function bf16BitsToF32(bits: number): number {
  return bitsToF32((bits & 0xffff) << 16);
}

function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
    // NaN: truncating could clear every payload bit and give inf, so force the quiet bit.
    return ((x >>> 16) | 0x40) & 0xffff;
  }
  // Round to nearest even; no overflow past 32 bits is possible for non-NaN inputs.
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 value -> bf16 bits, round to nearest even. */
export function f32ToBf16Bits(f: number): number {
  return f32BitsToBf16Bits(f32Bits(f));
}

/** Bulk fp16 decode, copied as bits so NaN payloads survive exactly. */
export function decodeF16(bits: Uint16Array): Float32Array {
  const table = f16DecodeTableBits();
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = table[bits[i]!]!;
  return out;
}

/** Bulk bf16 decode: written through the bit view, so NaN payloads survive exactly. */
export function decodeBf16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
  return out;
}

/** Bulk fp16 encode (round to nearest even). */
export function encodeF16(values: Float32Array): Uint16Array {
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32BitsToF16Bits(inBits[i]!);
  return out;
}

/** Bulk bf16 encode (round to nearest even). */
export function encodeBf16(values: Float32Array): Uint16Array {
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32BitsToBf16Bits(inBits[i]!);
  return out;
}
