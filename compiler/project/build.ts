/**
 * `vnmc build` as a library call: compiles every model of a config that changed since the last build,
 * in parallel on worker threads, checks each against its quality budget, and only then moves its
 * output into place. Unchanged models are skipped (compiler/project/cache.ts).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmdirSync, rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { Codes, VnmcError } from "../diagnostics.js";
import type { CompileReport } from "../report.js";
import { type BudgetMiss, checkBudget, type QualityNumbers, qualityOf } from "./budget.js";
import { type Manifest, type ManifestEntry, modelKey, outputIntact, readManifest, stampOf, writeManifest } from "./cache.js";
import { type BuildConfig, findConfig, loadConfig, type ResolvedConfig, type ResolvedModel, resolveConfig, CONFIG_FILES } from "./config.js";
import type { WorkerReply, WorkerRequest } from "./protocol.js";

export interface BuildOptions {
  /** A config file, or the config itself (paths then relative to `cwd`). Default: vnmc.config.{json,js,mjs,ts} in `cwd`. */
  config?: string | BuildConfig;
  /** Default: process.cwd(). */
  cwd?: string;
  /** Compile every model, whatever the cache says. */
  force?: boolean;
  /** Build only the models with these names. */
  only?: string[];
  /** Models compiled at once (overrides the config's `concurrency`). */
  concurrency?: number;
  onEvent?: (event: BuildEvent) => void;
  /** Stops the build: workers are terminated, staged outputs removed, and the build rejects with the reason. */
  signal?: AbortSignal;
}

export type BuildEvent =
  | { type: "skip"; name: string; output: string }
  | { type: "start"; name: string; reason: string }
  | { type: "phase"; name: string; phase: string }
  | { type: "done"; name: string; output: string; ms: number }
  | { type: "fail"; name: string; message: string; code: string };

export interface ModelBuildResult {
  name: string;
  input: string;
  output: string;
  status: "skipped" | "compiled" | "failed";
  /** Why it was compiled: "not built before", "input or options changed", "output changed", "forced". */
  reason?: string;
  ms: number;
  error?: { code: string; message: string };
  budgetMisses: BudgetMiss[];
  quality?: QualityNumbers;
  /** The compile report (compiled models only). */
  report?: CompileReport;
  /** The typed module written (models with `types`). */
  types?: string;
}

export interface BuildResult {
  ok: boolean;
  config: string;
  models: ModelBuildResult[];
  ms: number;
}

/** A build in which a model failed or missed its budget; `result` has every model's outcome. */
export class BuildError extends VnmcError {
  constructor(readonly result: BuildResult) {
    const failed = result.models.filter((m) => m.status === "failed");
    super(
      failed.length === 1 && failed[0]!.budgetMisses.length > 0 ? Codes.BUDGET_MISSED : Codes.BUILD_FAILED,
      failed.length === 1
        ? `Model '${failed[0]!.name}' failed: ${failed[0]!.error!.message}`
        : `${failed.length} models failed: ${failed.map((m) => `'${m.name}' (${m.error!.message.replace(/\.$/, "")})`).join("; ")}.`,
      "input",
    );
    this.name = "BuildError";
  }
}

async function resolveBuildConfig(opts: BuildOptions): Promise<ResolvedConfig> {
  const cwd = resolve(opts.cwd ?? process.cwd());
  if (opts.config !== undefined && typeof opts.config !== "string") return resolveConfig(opts.config, "<inline config>", cwd);
  const file = opts.config ?? findConfig(cwd);
  if (!file) throw new VnmcError(Codes.BAD_CONFIG, `No ${CONFIG_FILES.join(", ")} in ${cwd}; create one (docs/build.md) or pass --config.`, "usage");
  return loadConfig(file, cwd);
}

function budgetMessage(misses: BudgetMiss[]): string {
  return `missed its quality budget: ${misses.map((m) => m.message).join("; ")}. The output was not written; loosen the budget or compile with a denser V:N:M (e.g. a larger V or smaller M) or with calibration data (calib).`;
}

/** Moves a staged output (and its .data) into place, the model last; never leaves a half-written file. */
function moveIntoPlace(staged: string, output: string): void {
  mkdirSync(dirname(output), { recursive: true });
  const move = (from: string, to: string): void => {
    try {
      renameSync(from, to);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
      const tmp = `${to}.tmp-${process.pid}`;
      copyFileSync(from, tmp);
      renameSync(tmp, to);
    }
  };
  const hasData = existsSync(`${staged}.data`);
  if (hasData) move(`${staged}.data`, `${output}.data`);
  move(staged, output);
  if (!hasData) rmSync(`${output}.data`, { force: true });
}

async function writeTypes(model: ResolvedModel): Promise<string> {
  const { writeModelTypes } = await import("../typegen/generate.js");
  writeModelTypes(model.output, model.types!);
  return model.types!;
}

/** Runs a build. Resolves when every model is built or skipped; rejects with BuildError when one failed. */
export async function build(opts: BuildOptions = {}): Promise<BuildResult> {
  const t0 = performance.now();
  opts.signal?.throwIfAborted();
  const config = await resolveBuildConfig(opts);
  const emit = opts.onEvent ?? (() => {});
  let models = config.models;
  if (opts.only?.length) {
    const unknown = opts.only.filter((n) => !models.some((m) => m.name === n));
    if (unknown.length) throw new VnmcError(Codes.BAD_CONFIG, `No model named '${unknown[0]}' in ${basename(config.file)}; the models are ${models.map((m) => m.name).join(", ")}.`, "usage");
    models = models.filter((m) => opts.only!.includes(m.name));
  }
  const manifest: Manifest = readManifest(config.cacheDir, config.root);
  const results = new Map<string, ModelBuildResult>();
  const todo: { model: ResolvedModel; key: string; externalData: string[]; reason: string }[] = [];

  for (const model of models) {
    const ts = performance.now();
    const previous = manifest.models[model.name];
    const { key, externalData } = modelKey(manifest, model, previous);
    const base: ModelBuildResult = { name: model.name, input: model.input, output: model.output, status: "skipped", ms: 0, budgetMisses: [] };
    let reason: string | undefined;
    if (opts.force) reason = "forced";
    else if (!previous) reason = "not built before";
    else if (previous.key !== key) reason = "input or options changed";
    else if (previous.output !== model.output || !outputIntact(previous)) reason = "output changed or missing";
    if (reason) {
      todo.push({ model, key, externalData, reason });
      continue;
    }
    // The output is current; only its typed module may need writing.
    if (model.types && (previous!.types !== model.types || !existsSync(model.types))) {
      base.types = await writeTypes(model);
      previous!.types = model.types;
      writeManifest(config.cacheDir, config.root, manifest);
    }
    // Skipped: the budget may have changed, so it is checked again on the recorded numbers.
    base.quality = previous!.quality;
    base.budgetMisses = checkBudget(model.budget, previous!.quality);
    if (base.budgetMisses.length) {
      base.status = "failed";
      base.error = { code: Codes.BUDGET_MISSED, message: budgetMessage(base.budgetMisses).replace("The output was not written", "The output from the last build is left as it was") };
      emit({ type: "fail", name: model.name, message: base.error.message, code: base.error.code });
    } else {
      emit({ type: "skip", name: model.name, output: model.output });
    }
    base.ms = performance.now() - ts;
    results.set(model.name, base);
  }

  if (todo.length) {
    const cores = availableParallelism();
    const size = Math.max(1, Math.min(todo.length, opts.concurrency ?? config.concurrency ?? Math.max(2, Math.floor(cores / 2))));
    const threadsEach = Math.max(1, Math.floor(cores / size));
    mkdirSync(config.cacheDir, { recursive: true });
    const stagingRoot = join(config.cacheDir, "staging");
    mkdirSync(stagingRoot, { recursive: true });
    const workers: Worker[] = [];
    const stagings = new Set<string>();
    let nextId = 0;
    let aborted: unknown;
    const onAbort = (): void => {
      aborted = opts.signal!.reason;
      for (const w of workers) void w.terminate();
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });

    const compileOne = (worker: Worker, job: (typeof todo)[number]): Promise<void> =>
      new Promise<void>((done) => {
        const { model } = job;
        const ts = performance.now();
        const staging = mkdtempSync(join(stagingRoot, `${model.name.replace(/[^\w.-]/g, "_")}-`));
        stagings.add(staging);
        const staged = join(staging, basename(model.output));
        const id = nextId++;
        const result: ModelBuildResult = { name: model.name, input: model.input, output: model.output, status: "failed", reason: job.reason, ms: 0, budgetMisses: [] };
        const finish = (): void => {
          worker.off("message", onMessage);
          worker.off("error", onError);
          worker.off("exit", onExit);
          rmSync(staging, { recursive: true, force: true });
          stagings.delete(staging);
          result.ms = performance.now() - ts;
          results.set(model.name, result);
          if (result.status === "failed") emit({ type: "fail", name: model.name, message: result.error!.message, code: result.error!.code });
          else emit({ type: "done", name: model.name, output: model.output, ms: result.ms });
          done();
        };
        const fail = (code: string, message: string): void => {
          result.error = { code, message };
          finish();
        };
        const onMessage = async (r: WorkerReply): Promise<void> => {
          if (r.id !== id) return;
          if (r.type === "progress") {
            emit({ type: "phase", name: model.name, phase: r.phase });
            return;
          }
          if (r.type === "error") return fail(r.error.code ?? "VNMC-INTERNAL", r.error.message);
          const report = r.report;
          report.output = model.output;
          result.report = report;
          result.quality = qualityOf(report);
          result.budgetMisses = checkBudget(model.budget, result.quality);
          if (result.budgetMisses.length) return fail(Codes.BUDGET_MISSED, budgetMessage(result.budgetMisses));
          try {
            moveIntoPlace(staged, model.output);
            const stamp = stampOf(model.output)!;
            const data = stampOf(`${model.output}.data`);
            const entry: ManifestEntry = {
              key: job.key, output: model.output, outputStamp: { ...stamp, ...(data ? { data } : {}) }, externalData: job.externalData,
              ...(result.quality ? { quality: result.quality } : {}),
            };
            if (model.types) {
              result.types = await writeTypes(model);
              entry.types = model.types;
            }
            manifest.models[model.name] = entry;
            writeManifest(config.cacheDir, config.root, manifest);
            result.status = "compiled";
            finish();
          } catch (e) {
            fail(e instanceof VnmcError ? e.code : Codes.WRITE_FAILED, `could not write its output: ${(e as Error).message}`);
          }
        };
        const onError = (e: Error): void => fail("VNMC-INTERNAL", `its worker thread failed: ${e.message}`);
        const onExit = (): void => fail("VNMC-INTERNAL", aborted !== undefined ? "aborted" : "its worker thread exited");
        worker.on("message", onMessage);
        worker.on("error", onError);
        worker.on("exit", onExit);
        emit({ type: "start", name: model.name, reason: job.reason });
        const options = { ...model.options, threads: model.options.threads ?? threadsEach };
        worker.postMessage({ id, input: model.input, output: staged, options } satisfies WorkerRequest);
      });

    const queue = [...todo];
    const lane = async (): Promise<void> => {
      let worker: Worker | undefined;
      try {
        while (queue.length && aborted === undefined) {
          if (!worker) {
            worker = new Worker(new URL("./worker.js", import.meta.url));
            workers.push(worker);
          }
          const w: Worker = worker;
          await compileOne(w, queue.shift()!);
          // A worker that died is replaced for the next model.
          if (w.threadId === -1) worker = undefined;
        }
      } finally {
        if (worker) await worker.terminate();
      }
    };
    try {
      await Promise.all(Array.from({ length: size }, lane));
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      for (const s of stagings) rmSync(s, { recursive: true, force: true });
      try {
        rmdirSync(stagingRoot); // only when empty: another build may be using it
      } catch {
        /* not empty */
      }
    }
    if (aborted !== undefined) throw aborted;
  }
  const result: BuildResult = {
    ok: [...results.values()].every((r) => r.status !== "failed"),
    config: config.file,
    models: models.map((m) => results.get(m.name)!),
    ms: performance.now() - t0,
  };
  if (!result.ok) throw new BuildError(result);
  return result;
}
