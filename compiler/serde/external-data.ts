import { existsSync, lstatSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, join, normalize, relative, sep } from "node:path";
import { Codes, VnmcError } from "../diagnostics.js";

export interface ExternalDataRef {
  location: string;
  offset: number;
  length: number | undefined;
}

export function parseExternalData(tensorName: string, entries: Array<{ key: string; value: string }>): ExternalDataRef {
  const get = (k: string) => entries.find((e) => e.key === k)?.value;
  const location = get("location");
  if (!location) {
    throw new VnmcError(Codes.BAD_TENSOR, `Tensor '${tensorName}' is marked as external data but names no location; re-export the model.`);
  }
  const num = (k: string): number | undefined => {
    const s = get(k);
    if (s === undefined) return undefined;
    if (!/^\d+$/.test(s)) {
      throw new VnmcError(Codes.EXTERNAL_DATA_RANGE, `Tensor '${tensorName}' has an invalid external data ${k} '${s}'; re-export the model.`);
    }
    return Number(s);
  };
  return { location, offset: num("offset") ?? 0, length: num("length") };
}

/**
 * Resolve an external data location against the model's folder, refusing anything that escapes it:
 * absolute paths, `..` segments, and symbolic links that point outside. A model is untrusted input.
 */
export function resolveExternalPath(modelDir: string, tensorName: string, location: string): string {
  const norm = normalize(location);
  if (isAbsolute(location) || /^[a-zA-Z]:[\\/]/.test(location) || norm.split(/[\\/]/).includes("..")) {
    throw new VnmcError(
      Codes.EXTERNAL_DATA_ESCAPES,
      `Tensor '${tensorName}' points to external data '${location}' outside the model's folder; move the data next to the model and use a relative location.`,
    );
  }
  const full = join(modelDir, norm);
  if (!existsSync(full)) {
    throw new VnmcError(
      Codes.EXTERNAL_DATA_MISSING,
      `External data file '${location}' for tensor '${tensorName}' is missing; put it next to the model file.`,
    );
  }
  const realDir = realpathSync(modelDir);
  const real = realpathSync(full);
  const rel = relative(realDir, real);
  if (rel.startsWith(".." + sep) || rel === ".." || isAbsolute(rel) || lstatSync(full).isSymbolicLink() && rel.startsWith("..")) {
    throw new VnmcError(
      Codes.EXTERNAL_DATA_ESCAPES,
      `External data '${location}' for tensor '${tensorName}' is a link that leads outside the model's folder; copy the data next to the model instead.`,
    );
  }
  if (!statSync(real).isFile()) {
    throw new VnmcError(Codes.EXTERNAL_DATA_MISSING, `External data '${location}' for tensor '${tensorName}' is not a regular file.`);
  }
  return real;
}

/** Check that [offset, offset+length) lies inside the file and matches the tensor's size. */
export function checkExternalRange(tensorName: string, path: string, ref: ExternalDataRef, expected: number | undefined): number {
  const size = statSync(path).size;
  const length = ref.length ?? expected;
  if (length === undefined) {
    throw new VnmcError(Codes.EXTERNAL_DATA_RANGE, `Tensor '${tensorName}' has external data without a length and a type of unknown size.`);
  }
  if (expected !== undefined && length !== expected) {
    throw new VnmcError(
      Codes.EXTERNAL_DATA_RANGE,
      `Tensor '${tensorName}' declares ${length} bytes of external data but its shape and type need ${expected}; the model is corrupt.`,
    );
  }
  if (ref.offset + length > size) {
    throw new VnmcError(
      Codes.EXTERNAL_DATA_RANGE,
      `Tensor '${tensorName}' reads bytes ${ref.offset}..${ref.offset + length} of '${ref.location}', which has only ${size}; the data file is truncated or does not belong to this model.`,
    );
  }
  return length;
}
