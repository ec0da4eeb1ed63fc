/** ONNX TensorProto.DataType codes, kept as plain numbers so the IR does not depend on the protobuf schema. */
export const DataType = {
  UNDEFINED: 0, FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, COMPLEX64: 14, COMPLEX128: 15, BFLOAT16: 16,
  FLOAT8E4M3FN: 17, FLOAT8E4M3FNUZ: 18, FLOAT8E5M2: 19, FLOAT8E5M2FNUZ: 20, UINT4: 21, INT4: 22,
  FLOAT4E2M1: 23, FLOAT8E8M0: 24,
} as const;
export type DataType = number;

const BITS: Record<number, number> = {
  1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128,
  16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8,
};

/** Bits per element, or undefined for strings and types this version does not know. */
export function elementBits(dt: DataType): number | undefined {
  return BITS[dt];
}

/** Bytes of raw data for `count` elements (sub-byte types are packed two per byte, rounded up). */
export function rawByteLength(dt: DataType, count: number): number | undefined {
  const bits = elementBits(dt);
  return bits === undefined ? undefined : Math.ceil((bits * count) / 8);
}

const NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(DataType).map(([k, v]) => [v, k.toLowerCase()]),
);

export function dataTypeName(dt: DataType): string {
  return NAMES[dt] ?? `type#${dt}`;
}

export function isFloatType(dt: DataType): boolean {
  return dt === DataType.FLOAT || dt === DataType.FLOAT16 || dt === DataType.BFLOAT16 || dt === DataType.DOUBLE;
}
