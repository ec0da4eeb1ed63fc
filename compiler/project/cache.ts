/**
 * The incremental build's cache: a manifest (written atomically) that records, per model, the key it
 * was compiled under and what it produced. The key is a SHA-256 of vnmc's version, the options that
 * change the output, the output's file name, and the contents of the input model, its external data
 * and its calibration files. File hashes are reused while a file's size and mtime are unchanged (as
 * git's index does), so an unchanged model is skipped without reading it.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { readModelFile } from "../serde/read.js";
import { VERSION } from "../version.js";
import type { QualityNumbers } from "./budget.js";
import type { ModelCompileOptions, ResolvedModel } from "./config.js";

export interface FileStamp {
  size: number;
  mtimeMs: number;
  sha256: string;
}

export interface ManifestEntry {
  key: string;
  output: string;
  /** Size and mtime of the output (and of its .data file) as written, to notice outputs changed or removed since. */
  outputStamp: { size: number; mtimeMs: number; data?: { size: number; mtimeMs: number } };
  /** External data files of the input model (absolute), so an unchanged input needs no parsing. */
  externalData: string[];
  quality?: QualityNumbers;
  types?: string;
}

/** Paths in the manifest are relative to the config's folder, so a cache restored elsewhere (CI) still applies. */
export interface Manifest {
  format: 1;
  vnmcVersion: string;
  /** Stamps of the files hashed, by path. */
  files: Record<string, FileStamp>;
  models: Record<string, ManifestEntry>;
}

export const MANIFEST = "manifest.json";

/** The manifest with absolute paths (relative ones are resolved against `root`). */
export function readManifest(cacheDir: string, root: string): Manifest {
  const empty: Manifest = { format: 1, vnmcVersion: VERSION, files: {}, models: {} };
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(join(cacheDir, MANIFEST), "utf8")) as Manifest;
    if (!(m && m.format === 1 && typeof m.models === "object" && typeof m.files === "object")) return empty;
  } catch {
    // Missing or damaged: everything is compiled again.
    return empty;
  }
  const abs = (p: string): string => resolve(root, p);
  m.files = Object.fromEntries(Object.entries(m.files).map(([k, v]) => [abs(k), v]));
  for (const e of Object.values(m.models)) {
    e.output = abs(e.output);
    e.externalData = e.externalData.map(abs);
    if (e.types) e.types = abs(e.types);
  }
  return m;
}

/** Written to a temporary file and renamed, so a crash never leaves half a manifest. */
export function writeManifest(cacheDir: string, root: string, m: Manifest): void {
  mkdirSync(cacheDir, { recursive: true });
  const path = join(cacheDir, MANIFEST);
  const tmp = `${path}.tmp-${process.pid}`;
  const rel = (p: string): string => relative(root, p);
  const out: Manifest = {
    format: 1, vnmcVersion: VERSION,
    files: Object.fromEntries(Object.entries(m.files).map(([k, v]) => [rel(k), v])),
    models: Object.fromEntries(Object.entries(m.models).map(([name, e]) => [name, {
      ...e, output: rel(e.output), externalData: e.externalData.map(rel), ...(e.types ? { types: rel(e.types) } : {}),
    }])),
  };
  writeFileSync(tmp, JSON.stringify(out, null, 1) + "\n");
  renameSync(tmp, path);
}

function sha256File(path: string): string {
  const h = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

/** SHA-256 of a file, from the manifest's stamp while size and mtime are unchanged. */
export function hashFile(m: Manifest, path: string): string {
  const st = statSync(path);
  const old = m.files[path];
  if (old && old.size === st.size && old.mtimeMs === st.mtimeMs) return old.sha256;
  const sha256 = sha256File(path);
  m.files[path] = { size: st.size, mtimeMs: st.mtimeMs, sha256 };
  return sha256;
}

/** External data files the model refers to (parsed only when the model file changed). */
export function externalDataOf(m: Manifest, input: string, previous: ManifestEntry | undefined): string[] {
  const st = statSync(input);
  const old = m.files[input];
  if (previous && old && old.size === st.size && old.mtimeMs === st.mtimeMs && previous.externalData.every((f) => existsSync(f))) return previous.externalData;
  const { model } = readModelFile(input);
  const files = new Set<string>();
  for (const g of model.graph.allGraphs()) {
    for (const v of g.initializers) {
      const p = (v.initializer as { path?: string } | undefined)?.path;
      if (p) files.add(resolve(p));
    }
  }
  return [...files].sort();
}

/** Files of a calibration folder (recursively, sorted) or the one file; none for random:N. */
function calibFiles(calib: string | undefined): string[] {
  if (calib === undefined || /^random:/.test(calib) || !existsSync(calib)) return [];
  if (!statSync(calib).isDirectory()) return [calib];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  walk(calib);
  return out;
}

/** Options that do not change the output bytes, left out of the key. */
const NOT_IN_KEY = new Set<string>(["threads"]);

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined).map((k) => [k, canonical((v as Record<string, unknown>)[k])]));
  }
  return v;
}

/** The model's cache key and the external data files it covers. */
export function modelKey(m: Manifest, model: ResolvedModel, previous: ManifestEntry | undefined): { key: string; externalData: string[] } {
  const externalData = externalDataOf(m, model.input, previous);
  const options = Object.fromEntries(Object.entries(model.options).filter(([k]) => !NOT_IN_KEY.has(k))) as ModelCompileOptions;
  const root = model.options.calib && !/^random:/.test(model.options.calib) ? model.options.calib : undefined;
  const parts = {
    vnmc: VERSION,
    options: canonical({ ...options, calib: root ? "<files>" : options.calib }),
    outputName: basename(model.output),
    input: hashFile(m, model.input),
    externalData: externalData.map((f) => [relative(model.input, f), hashFile(m, f)]),
    calib: calibFiles(root).map((f) => [relative(root!, f), hashFile(m, f)]),
  };
  return { key: createHash("sha256").update(JSON.stringify(parts)).digest("hex"), externalData };
}

export function stampOf(path: string): { size: number; mtimeMs: number } | undefined {
  if (!existsSync(path)) return undefined;
  const st = statSync(path);
  return { size: st.size, mtimeMs: st.mtimeMs };
}

/** True when the output on disk is the one the manifest entry recorded. */
export function outputIntact(e: ManifestEntry): boolean {
  const now = stampOf(e.output);
  if (!now || now.size !== e.outputStamp.size || now.mtimeMs !== e.outputStamp.mtimeMs) return false;
  const data = stampOf(`${e.output}.data`);
  if (!e.outputStamp.data) return data === undefined;
  return !!data && data.size === e.outputStamp.data.size && data.mtimeMs === e.outputStamp.data.mtimeMs;
}
