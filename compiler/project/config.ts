/**
 * `vnmc build`'s configuration: vnmc.config.json (or .js / .mjs / .ts), what it may hold, and its
 * validation. Every mistake is reported with the key path that holds it (e.g. `models[1].vnm`).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { CompileOptions } from "../compile.js";
import { Codes, VnmcError } from "../diagnostics.js";

/** The compile options a config may set: all of CompileOptions that are plain data. */
export type ModelCompileOptions = Omit<CompileOptions, "output" | "onProgress" | "speedupTable">;

/** Quality a compiled model must keep, checked against its compile report; a miss fails the build. */
export interface QualityBudget {
  /**
   * Largest relative L2 error ‖compiled − original‖₂ / ‖original‖₂ allowed on any model output (on the
   * calibration samples when `calib` is set, else on verification's generated inputs).
   */
  maxOutputError?: number;
  /** Smallest cosine similarity between compiled and original allowed on any output. */
  minCosine?: number;
  /** Smallest top-1 agreement (fraction of rows with the same argmax) on class-score outputs. */
  minTop1Agreement?: number;
}

export interface ModelConfig extends ModelCompileOptions {
  /** The ONNX model, relative to the config file. */
  input: string;
  /** The compiled model, relative to the config file (default `<input>.vnm.onnx`). */
  output?: string;
  /** Name in messages and the cache (default: the input's file name without `.onnx`). */
  name?: string;
  budget?: QualityBudget;
  /** Also write a typed TypeScript module for the compiled model here (docs/build.md). */
  types?: string;
}

export interface BuildConfig {
  /** Options every model starts from (a model's own options override them). */
  defaults?: ModelCompileOptions & { budget?: QualityBudget };
  models: ModelConfig[];
  /** Folder of the build cache (manifest), relative to the config file (default `.vnmc-cache`). */
  cacheDir?: string;
  /** Models compiled at once, each on its own worker thread (default: min(models, cores / 2), at least 1). */
  concurrency?: number;
}

/** A typed identity, for vnmc.config.ts / .js: `export default defineConfig({ models: [...] })`. */
export function defineConfig(config: BuildConfig): BuildConfig {
  return config;
}

/** One model, resolved: absolute paths, defaults applied, checked. */
export interface ResolvedModel {
  name: string;
  input: string;
  output: string;
  options: ModelCompileOptions;
  budget: QualityBudget;
  types?: string;
}

export interface ResolvedConfig {
  /** The config file (or "<inline>"), and the folder paths are relative to. */
  file: string;
  root: string;
  cacheDir: string;
  concurrency?: number;
  models: ResolvedModel[];
}

export const CONFIG_FILES = ["vnmc.config.json", "vnmc.config.js", "vnmc.config.mjs", "vnmc.config.ts"];

function configError(file: string, message: string): VnmcError {
  return new VnmcError(Codes.BAD_CONFIG, `${basename(file)}: ${message}`, "usage");
}

type Check = (v: unknown) => string | undefined;
const isString: Check = (v) => (typeof v === "string" && v !== "" ? undefined : "a non-empty string");
const isBool: Check = (v) => (typeof v === "boolean" ? undefined : "true or false");
const isNumber: Check = (v) => (typeof v === "number" && Number.isFinite(v) ? undefined : "a number");
const isNonNegInt: Check = (v) => (typeof v === "number" && Number.isInteger(v) && v >= 0 ? undefined : "a non-negative integer");
const isStrings: Check = (v) => (Array.isArray(v) && v.every((s) => typeof s === "string") ? undefined : "an array of strings");
const isShapes: Check = (v) =>
  v !== null && typeof v === "object" && !Array.isArray(v) &&
  Object.values(v).every((d) => Array.isArray(d) && d.every((n) => Number.isInteger(n) && n > 0))
    ? undefined
    : 'an object of input name to dims, e.g. { "input": [1, 128] }';
const isVnm: Check = (v) => (typeof v === "string" && /^\d+:\d+:\d+$/.test(v) ? undefined : 'a V:N:M string such as "64:2:8"');
const oneOf = (values: readonly string[]): Check => (v) => (typeof v === "string" && values.includes(v) ? undefined : `one of ${values.map((s) => `"${s}"`).join(", ")}`);

/**
 * The compile options a config may hold and the check of each. `satisfies` keeps this list complete:
 * an option added to CompileOptions fails type-checking here until it is given a check.
 */
const OPTION_CHECKS = {
  vnm: isVnm,
  include: isStrings,
  exclude: isStrings,
  minSize: isNonNegInt,
  externalData: isBool,
  verify: isBool,
  shapes: isShapes,
  threads: isNonNegInt,
  calib: isString,
  score: oneOf(["magnitude", "wanda", "ria"]),
  method: oneOf(["select", "sparsegpt"]),
  sparsegptMaskScore: isString,
  sparsegptDamping: isNumber,
  sequential: isBool,
  sequentialTarget: oneOf(["pruned", "dense"]),
  refit: isBool,
  refitSweeps: isNonNegInt,
  permute: isBool,
  permuteTime: isNumber,
  sparsity: isNumber,
  speedup: isNumber,
  perLayer: isBool,
  tokens: isNonNegInt,
} satisfies { [K in keyof Required<ModelCompileOptions>]: Check };

const BUDGET_CHECKS: Record<keyof QualityBudget, Check> = {
  maxOutputError: (v) => (typeof v === "number" && v >= 0 && Number.isFinite(v) ? undefined : "a non-negative number"),
  minCosine: (v) => (typeof v === "number" && v >= -1 && v <= 1 ? undefined : "a number from -1 to 1"),
  minTop1Agreement: (v) => (typeof v === "number" && v >= 0 && v <= 1 ? undefined : "a number from 0 to 1"),
};

const MODEL_KEYS = ["input", "output", "name", "budget", "types"];
const TOP_KEYS = ["defaults", "models", "cacheDir", "concurrency", "$schema"];

/** Edit distance (insertions, deletions, substitutions), case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The closest known key, for "did you mean" (within 2 edits, or a prefix of 4 or more letters). */
function suggest(key: string, known: string[]): string {
  const scored = known.map((k) => ({ k, d: distance(key.replace(/[-_]/g, ""), k) })).sort((x, y) => x.d - y.d);
  const best = scored[0];
  const hit = best && best.d <= Math.min(2, Math.floor(key.length / 3)) ? best.k : known.find((k) => key.length >= 4 && k.toLowerCase().startsWith(key.toLowerCase()));
  return hit ? ` (did you mean '${hit}'?)` : "";
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function checkOptions(file: string, where: string, obj: Record<string, unknown>, extra: string[]): void {
  const known = [...Object.keys(OPTION_CHECKS), ...extra];
  for (const [key, value] of Object.entries(obj)) {
    if (extra.includes(key)) continue;
    const check = (OPTION_CHECKS as Record<string, Check>)[key];
    if (!check) throw configError(file, `unknown key '${where}.${key}'${suggest(key, known)}; the keys a model may have are listed in docs/build.md.`);
    if (value === undefined) continue;
    const want = check(value);
    if (want) throw configError(file, `'${where}.${key}' must be ${want} (got ${JSON.stringify(value)}).`);
  }
}

function checkBudget(file: string, where: string, v: unknown): QualityBudget {
  if (!isPlainObject(v)) throw configError(file, `'${where}' must be an object such as { "minCosine": 0.99 }.`);
  for (const [key, value] of Object.entries(v)) {
    const check = BUDGET_CHECKS[key as keyof QualityBudget];
    if (!check) throw configError(file, `unknown key '${where}.${key}'${suggest(key, Object.keys(BUDGET_CHECKS))}; a budget may set ${Object.keys(BUDGET_CHECKS).join(", ")}.`);
    const want = check(value);
    if (want) throw configError(file, `'${where}.${key}' must be ${want} (got ${JSON.stringify(value)}).`);
  }
  return v as QualityBudget;
}

/** Checks a config object (parsed JSON or a module's default export) and resolves its paths against `root`. */
export function resolveConfig(raw: unknown, file: string, root: string): ResolvedConfig {
  if (!isPlainObject(raw)) throw configError(file, 'the config must be an object with a "models" array.');
  for (const key of Object.keys(raw)) {
    if (!TOP_KEYS.includes(key)) throw configError(file, `unknown key '${key}'${suggest(key, TOP_KEYS)}; the top level may have ${TOP_KEYS.slice(0, 4).join(", ")}.`);
  }
  if (!Array.isArray(raw.models) || raw.models.length === 0) {
    throw configError(file, `'models' must be a non-empty array of { "input": "model.onnx", ... } entries.`);
  }
  if (raw.cacheDir !== undefined && isString(raw.cacheDir)) throw configError(file, `'cacheDir' must be a non-empty string.`);
  if (raw.concurrency !== undefined && !(Number.isInteger(raw.concurrency) && (raw.concurrency as number) >= 1)) {
    throw configError(file, `'concurrency' must be an integer >= 1 (got ${JSON.stringify(raw.concurrency)}).`);
  }
  let defaults: Record<string, unknown> = {};
  let defaultBudget: QualityBudget = {};
  if (raw.defaults !== undefined) {
    if (!isPlainObject(raw.defaults)) throw configError(file, `'defaults' must be an object of compile options.`);
    checkOptions(file, "defaults", raw.defaults, ["budget"]);
    const { budget, ...rest } = raw.defaults;
    if (budget !== undefined) defaultBudget = checkBudget(file, "defaults.budget", budget);
    defaults = rest;
  }
  const models: ResolvedModel[] = [];
  const names = new Map<string, string>();
  const outputs = new Map<string, string>();
  raw.models.forEach((m: unknown, i: number) => {
    const where = `models[${i}]`;
    if (!isPlainObject(m)) throw configError(file, `'${where}' must be an object such as { "input": "model.onnx" }.`);
    checkOptions(file, where, m, MODEL_KEYS);
    if (typeof m.input !== "string" || m.input === "") throw configError(file, `'${where}.input' must be the path of an ONNX model (relative to the config file).`);
    for (const key of ["output", "name", "types"]) {
      if (m[key] !== undefined && (typeof m[key] !== "string" || m[key] === "")) throw configError(file, `'${where}.${key}' must be a non-empty string.`);
    }
    const input = resolve(root, m.input);
    if (!existsSync(input)) throw configError(file, `'${where}.input' is '${m.input}', which does not exist (paths are relative to ${root}); fix the path.`);
    const name = (m.name as string | undefined) ?? basename(m.input).replace(/\.onnx$/i, "");
    const output = m.output !== undefined ? resolve(root, m.output as string) : join(dirname(input), `${basename(input).replace(/\.onnx$/i, "")}.vnm.onnx`);
    if (output === input) throw configError(file, `'${where}.output' is the input model; choose another output path.`);
    if (names.has(name)) throw configError(file, `'${where}' has the name '${name}' of ${names.get(name)}; give one of them another "name".`);
    if (outputs.has(output)) throw configError(file, `'${where}.output' is also the output of ${outputs.get(output)}; give each model its own output.`);
    names.set(name, where);
    outputs.set(output, where);
    const { input: _i, output: _o, name: _n, budget, types, ...opts } = m;
    const modelBudget = budget !== undefined ? checkBudget(file, `${where}.budget`, budget) : {};
    const resolved: ResolvedModel = { name, input, output, options: { ...defaults, ...opts } as ModelCompileOptions, budget: { ...defaultBudget, ...modelBudget } };
    // A calibration folder or file is relative to the config file too (random:N is not a path).
    const calib = resolved.options.calib;
    if (calib !== undefined && !/^random:/.test(calib)) resolved.options.calib = resolve(root, calib);
    if (types !== undefined) resolved.types = resolve(root, types as string);
    const b = resolved.budget;
    if (Object.keys(b).length > 0 && resolved.options.verify === false) {
      throw configError(file, `'${where}' has a budget but verify: false; budgets are checked on verification's numbers, so drop one of them.`);
    }
    models.push(resolved);
  });
  return {
    file, root, models,
    cacheDir: resolve(root, (raw.cacheDir as string | undefined) ?? ".vnmc-cache"),
    ...(raw.concurrency !== undefined ? { concurrency: raw.concurrency as number } : {}),
  };
}

/** The config file in `dir`, by CONFIG_FILES order. */
export function findConfig(dir: string): string | undefined {
  return CONFIG_FILES.map((f) => join(dir, f)).find((f) => existsSync(f));
}

/** Reads and validates a config file (.json, .js / .mjs, or .ts compiled with TypeScript on the fly). */
export async function loadConfig(file: string, cwd = process.cwd()): Promise<ResolvedConfig> {
  const path = resolve(cwd, file);
  if (!existsSync(path)) throw new VnmcError(Codes.BAD_CONFIG, `The config file '${file}' does not exist; create vnmc.config.json (docs/build.md) or pass --config.`, "usage");
  const ext = extname(path).toLowerCase();
  let raw: unknown;
  if (ext === ".json") {
    try {
      raw = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw configError(path, `not valid JSON (${(e as Error).message}); fix the syntax.`);
    }
  } else if (ext === ".js" || ext === ".mjs") {
    raw = await importDefault(pathToFileURL(path).href, path);
  } else if (ext === ".ts" || ext === ".mts") {
    const { ts } = await import("ts-morph");
    const out = ts.transpileModule(readFileSync(path, "utf8"), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 }, fileName: path, reportDiagnostics: true,
    });
    const errors = out.diagnostics?.filter((d) => d.category === ts.DiagnosticCategory.Error) ?? [];
    if (errors.length) throw configError(path, `TypeScript syntax error: ${ts.flattenDiagnosticMessageText(errors[0]!.messageText, " ")}; fix it.`);
    // Next to the config so that its imports resolve as they would from the .ts file.
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.mjs`);
    writeFileSync(tmp, out.outputText);
    try {
      raw = await importDefault(pathToFileURL(tmp).href, path);
    } finally {
      rmSync(tmp, { force: true });
    }
  } else {
    throw new VnmcError(Codes.BAD_CONFIG, `The config file '${file}' must end in .json, .js, .mjs or .ts.`, "usage");
  }
  return resolveConfig(raw, path, dirname(path));
}

async function importDefault(url: string, file: string): Promise<unknown> {
  let mod: { default?: unknown };
  try {
    mod = (await import(url)) as { default?: unknown };
  } catch (e) {
    throw configError(file, `could not be loaded: ${String((e as Error)?.message ?? e).split("\n")[0]}.`);
  }
  const value = typeof mod.default === "function" ? await (mod.default as () => unknown)() : mod.default;
  if (value === undefined) throw configError(file, "has no default export; write `export default defineConfig({ models: [...] })`.");
  return value;
}
