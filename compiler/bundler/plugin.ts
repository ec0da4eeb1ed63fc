/**
 * The bundler plugin, one implementation for Vite, Rollup, webpack and esbuild (unplugin):
 * `import modelUrl from "./model.onnx?vnm"` compiles the model at build time (options from the
 * query, e.g. `?vnm=16:2:8&minSize=0`, over the plugin's `defaults`), emits the compiled model (and
 * its external data) as assets, and makes the import the compiled model's URL. Compiled models are
 * cached by content (input, external data, options, vnmc version) under `cacheDir`, which the
 * dev server serves from directly.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { createUnplugin, type UnpluginFactory } from "unplugin";
import { compile } from "../api.js";
import { checkBudget, qualityOf } from "../project/budget.js";
import { type Manifest, modelKey } from "../project/cache.js";
import { type ModelCompileOptions, type QualityBudget, resolveConfig } from "../project/config.js";
import { Codes, VnmcError } from "../diagnostics.js";
import { VERSION } from "../version.js";

export interface VnmcPluginOptions {
  /** Compile options for every `?vnm` import (the query's options override them). */
  defaults?: ModelCompileOptions;
  /** Quality budget every compiled model must keep (docs/build.md); a miss fails the bundle. */
  budget?: QualityBudget;
  /** Cache of compiled models (default `node_modules/.cache/vnmc` under the bundler's root / cwd). */
  cacheDir?: string;
  /** Folder of the emitted models in the output (default "vnm"). */
  assetsDir?: string;
  /**
   * esbuild and webpack: the URL prefix of the emitted models (default: relative to the output
   * bundle, `new URL("./vnm/…", import.meta.url)`, for bundles written at the output folder's root).
   */
  publicPath?: string;
}

const QUERY = /\.onnx\?(?:[^#]*&)?vnm(?:[=&]|$)/;
const PREFIX = "\0vnmc:";

/** Query string options: `vnm=16:2:8&minSize=0&exclude=a&exclude=b`; numbers and booleans parsed. */
export function queryOptions(query: string): Record<string, unknown> {
  const params = new URLSearchParams(query);
  const out: Record<string, unknown> = {};
  const arrays = new Set(["include", "exclude"]);
  for (const [k, v] of params) {
    if (k === "vnm" && v === "") continue;
    const value: unknown = v === "" || v === "true" ? true : v === "false" ? false : k !== "vnm" && /^-?\d+(\.\d+)?(e-?\d+)?$/.test(v) ? Number(v) : v;
    if (arrays.has(k)) out[k] = [...((out[k] as string[] | undefined) ?? []), v];
    else out[k] = value;
  }
  return out;
}

interface Compiled {
  file: string;
  data?: string;
  vnm: string;
  rewritten: number;
}

export const unpluginFactory: UnpluginFactory<VnmcPluginOptions | undefined> = (options = {}, meta) => {
  const assetsDir = options.assetsDir ?? "vnm";
  let root = process.cwd();
  let serve = false;
  const inflight = new Map<string, Promise<Compiled>>();
  const manifest: Manifest = { format: 1, vnmcVersion: VERSION, files: {}, models: {} };
  const cacheDir = (): string => resolve(root, options.cacheDir ?? "node_modules/.cache/vnmc");

  async function compileCached(input: string, query: string): Promise<Compiled> {
    const name = basename(input).replace(/\.onnx$/i, "").replace(/[^\w.-]/g, "_");
    // Validated as a vnmc.config model entry, so bad options get the same messages (naming the key).
    const cfg = resolveConfig({ defaults: options.defaults ?? {}, models: [{ input, ...queryOptions(query) }] }, `${basename(input)}?${query}`, dirname(input));
    const model = cfg.models[0]!;
    model.output = join(cacheDir(), "models", `${name}.vnm.onnx`);
    const { key } = modelKey(manifest, model, undefined);
    const file = join(cacheDir(), "models", key.slice(0, 16), `${name}-${key.slice(0, 8)}.vnm.onnx`);
    const summary = join(dirname(file), "summary.json");
    if (existsSync(file) && existsSync(summary)) return JSON.parse(readFileSync(summary, "utf8")) as Compiled;
    let p = inflight.get(file);
    if (!p) {
      p = (async () => {
        mkdirSync(dirname(file), { recursive: true });
        const { report } = await compile(input, { ...model.options, output: file });
        const misses = checkBudget(options.budget ?? {}, qualityOf(report));
        if (misses.length) {
          rmSync(dirname(file), { recursive: true, force: true });
          throw new VnmcError(Codes.BUDGET_MISSED, `${basename(input)} missed its quality budget: ${misses.map((m) => m.message).join("; ")}; loosen the budget or compile with a denser V:N:M.`);
        }
        const compiled: Compiled = { file, vnm: report.vnm, rewritten: report.totals.rewritten, ...(existsSync(`${file}.data`) ? { data: `${file}.data` } : {}) };
        writeFileSync(`${summary}.tmp`, JSON.stringify(compiled));
        renameSync(`${summary}.tmp`, summary);
        return compiled;
      })().finally(() => inflight.delete(file));
      inflight.set(file, p);
    }
    return p;
  }

  return {
    name: "vnmc",
    enforce: "pre",
    vite: {
      configResolved(config: { root: string; command: string }) {
        root = config.root;
        serve = config.command === "serve";
      },
    },
    esbuild: { loader: "js" },
    resolveId(id, importer) {
      if (!QUERY.test(id)) return null;
      const [path, query] = [id.slice(0, id.indexOf("?")), id.slice(id.indexOf("?") + 1)];
      // An absolute path that does not exist is root-relative, as Vite's URLs are ("/models/m.onnx").
      const abs = isAbsolute(path) ? (existsSync(path) ? path : join(root, path)) : resolve(importer ? dirname(importer.replace(PREFIX, "")) : root, path);
      return `${PREFIX}${abs}?${query}`;
    },
    loadInclude(id) {
      return id.startsWith(PREFIX);
    },
    async load(id) {
      if (!id.startsWith(PREFIX)) return null;
      const raw = id.slice(PREFIX.length);
      const input = raw.slice(0, raw.indexOf("?"));
      const query = raw.slice(raw.indexOf("?") + 1);
      if (!existsSync(input)) throw new Error(`vnmc: the model '${input}' does not exist; check the import path.`);
      this.addWatchFile(input);
      const c = await compileCached(input, query);
      const fileName = `${assetsDir}/${basename(c.file)}`;
      const info = `export const vnm = ${JSON.stringify(c.vnm)};\nexport const rewritten = ${c.rewritten};\nexport const fileName = ${JSON.stringify(fileName)};\n`;
      if (serve) {
        // Vite's dev server: the cached file, served as is.
        return `export default ${JSON.stringify(`/@fs${c.file}`)};\n${info}`;
      }
      // Rollup and Vite return the asset's reference id (unplugin's type says void for all bundlers).
      const emitFile = this.emitFile as unknown as (f: { type: "asset"; fileName: string; source: Uint8Array }) => string | undefined;
      const emit = (name: string, path: string) => emitFile({ type: "asset", fileName: name, source: readFileSync(path) });
      const ref = emit(fileName, c.file);
      if (c.data) emit(`${fileName}.data`, c.data);
      if (meta.framework === "vite" || meta.framework === "rollup" || meta.framework === "rolldown") {
        return `export default import.meta.ROLLUP_FILE_URL_${ref};\n${info}`;
      }
      if (options.publicPath !== undefined) return `export default ${JSON.stringify(options.publicPath.replace(/\/?$/, "/") + fileName)};\n${info}`;
      // A variable, so that webpack does not take the URL for a module of its own.
      return `const file = ${JSON.stringify(`./${fileName}`)};\nexport default new URL(file, import.meta.url).href;\n${info}`;
    },
  };
};

export const vnmcPlugin = /* #__PURE__ */ createUnplugin(unpluginFactory);
export const vite = vnmcPlugin.vite;
export const rollup = vnmcPlugin.rollup;
export const webpack = vnmcPlugin.webpack;
export const esbuild = vnmcPlugin.esbuild;
export default vnmcPlugin;
