/**
 * Calibration samples: where they come from (`--calib DIR`, a file, or `random:N`), how their arrays
 * are matched to the model's inputs, and the checks that turn bad input into one clear sentence.
 * Samples are read one at a time, on demand, so a large calibration set never sits in memory.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { Codes, VnmcError } from "../diagnostics.js";
import { dataTypeName } from "../ir/dtype.js";
import type { Model } from "../ir/model.js";
import type { Dim } from "../ir/value.js";
import { inputSpecs, randomInputs } from "../verify/random-inputs.js";
import { FormatError, numpyName, type RawArray } from "./npy.js";
import { type NamedArray, readNpyFile, readNpzFile, readTensorProtoFile } from "./tensor-file.js";

/** One model input's value in a sample. */
export interface CalibInput extends RawArray {
  name: string;
}

export interface CalibSample {
  /** For messages: the sample folder or file, relative to --calib. */
  label: string;
  /** One per input the sample gives, in the model's input order. */
  inputs: CalibInput[];
}

export interface CalibrationSource {
  readonly kind: "files" | "random";
  /** True for generated inputs: statistics then say nothing about real data. */
  readonly dataFree: boolean;
  readonly count: number;
  /** E.g. "16 samples from calib/" or "8 random samples (data-free)". */
  readonly description: string;
  /** Reads sample i (0 <= i < count), matched to the model's inputs and checked. */
  sample(i: number): CalibSample;
}

/** A graph input as calibration data must fill it. */
export interface ModelInput {
  name: string;
  elemType: number | undefined;
  shape: Dim[] | undefined;
  /** False for inputs with an initializer (a default that a sample may override). */
  required: boolean;
}

export function modelInputs(model: Model): ModelInput[] {
  return model.graph.inputs.map((v) => ({ name: v.name, elemType: v.type?.elemType, shape: v.type?.shape, required: !v.initializer }));
}

/** Seed of the first generated sample (verification's random check uses 1234). */
export const RANDOM_CALIB_SEED = 0x5eed;
const MAX_RANDOM_SAMPLES = 100_000;

const natural = (a: string, b: string) => a.localeCompare(b, "en", { numeric: true });
const PB = /^input_(\d+)\.pb$/;
const POSITIONAL = /^(?:input|arr)_(\d+)$/;

function unreadable(path: string, why: string): VnmcError {
  return new VnmcError(Codes.CALIB_UNREADABLE, `The calibration file '${path}' cannot be read: ${why}.`);
}

/** Runs a file reader, turning format and I/O problems into CALIB_UNREADABLE. */
function readOrFail<T>(path: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof FormatError) throw unreadable(path, e.message);
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw unreadable(path, code === "EACCES" ? "permission denied" : `${code}`);
    throw e;
  }
}

/** A sample's arrays, read when asked. */
interface SampleRef {
  label: string;
  load(): NamedArray[];
}

function pbSample(dir: string, files: string[], label: string): SampleRef {
  return {
    label,
    load: () =>
      files
        .map((f) => ({ f, i: Number(PB.exec(f)![1]) }))
        .sort((a, b) => a.i - b.i)
        .map(({ f, i }) => {
          const path = join(dir, f);
          return { ...readOrFail(path, () => readTensorProtoFile(path)), origin: path, index: i };
        }),
  };
}

function positionOf(name: string, order: number): number {
  const m = POSITIONAL.exec(name);
  return m ? Number(m[1]) : order;
}

function npySample(dir: string, files: string[], label: string): SampleRef {
  return {
    label,
    load: () =>
      files.map((f, order) => {
        const path = join(dir, f);
        const name = f.slice(0, -4);
        return { ...readOrFail(path, () => readNpyFile(path)), name, origin: path, index: positionOf(name, order) };
      }),
  };
}

function npzSample(path: string, label: string): SampleRef {
  return {
    label,
    load: () => readOrFail(path, () => readNpzFile(path)).map((a, order) => ({ ...a, origin: `${path}:${a.name}.npy`, index: positionOf(a.name, order) })),
  };
}

function singleFileSample(path: string, label: string, load: () => RawArray & { name?: string }): SampleRef {
  return { label, load: () => [{ name: "", ...readOrFail(path, load), origin: path, index: 0 }] };
}

function listDir(dir: string): { files: string[]; dirs: string[] } {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    throw new VnmcError(Codes.CALIB_UNREADABLE, `The calibration folder '${dir}' cannot be listed (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`);
  }
  const visible = entries.filter((e) => !e.name.startsWith(".")).sort((a, b) => natural(a.name, b.name));
  const isDir = (e: (typeof entries)[number]) => e.isDirectory() || (e.isSymbolicLink() && statSync(join(dir, e.name), { throwIfNoEntry: false })?.isDirectory());
  return { files: visible.filter((e) => !isDir(e)).map((e) => e.name), dirs: visible.filter(isDir).map((e) => e.name) };
}

/** Samples of a folder: sample folders (input_<i>.pb or .npy files), .npz files, and .npy files. */
function discover(root: string, singleInput: boolean): SampleRef[] {
  const refs: SampleRef[] = [];
  const rel = (p: string) => relative(root, p) || basename(root);
  const top = listDir(root);
  const folderSample = (dir: string, files: string[]): SampleRef | undefined => {
    const pb = files.filter((f) => PB.test(f));
    if (pb.length > 0) return pbSample(dir, pb, rel(dir));
    const npy = files.filter((f) => f.endsWith(".npy"));
    if (npy.length > 0) return npySample(dir, npy, rel(dir));
    return undefined;
  };
  // The folder itself is one sample when it holds input_<i>.pb files (a test_data_set_<n> folder),
  // or .npy files of a model with several inputs (one file per input).
  const topNpy = top.files.filter((f) => f.endsWith(".npy"));
  if (top.files.some((f) => PB.test(f)) || (!singleInput && topNpy.length > 0)) refs.push(folderSample(root, top.files)!);
  // With a single input, each .npy file is a sample, whatever its name.
  else for (const f of topNpy) refs.push(singleFileSample(join(root, f), f, () => readNpyFile(join(root, f))));
  for (const f of top.files.filter((x) => x.endsWith(".npz"))) refs.push(npzSample(join(root, f), f));
  for (const d of top.dirs) {
    const dir = join(root, d);
    const s = folderSample(dir, listDir(dir).files);
    if (s) refs.push(s);
  }
  return refs;
}

/** Matches a sample's arrays to the model's inputs (by name, else by position) and checks them. */
export function matchSample(label: string, arrays: NamedArray[], inputs: ModelInput[]): CalibInput[] {
  const byName = new Map(inputs.map((i) => [i.name, i]));
  const required = inputs.filter((i) => i.required);
  const list = inputs.map((i) => i.name).join(", ");
  const named = arrays.length > 0 && arrays.every((a) => byName.has(a.name));
  const positional = !named && arrays.every((a) => a.name === "" || (POSITIONAL.test(a.name) && !byName.has(a.name)));
  if (!named && !positional) {
    const bad = arrays.find((a) => !byName.has(a.name))!;
    throw new VnmcError(
      Codes.CALIB_INPUT_NAME,
      `Calibration sample '${label}': '${bad.origin}' is named '${bad.name}', which is not an input of the model (inputs: ${list}); name it after an input, or input_<i>/arr_<i> to match inputs by position.`,
    );
  }
  const given = new Map<string, NamedArray>();
  for (const a of arrays) {
    let name = a.name;
    if (!named) {
      const input = required[a.index];
      if (!input) {
        throw new VnmcError(
          Codes.CALIB_INPUT_NAME,
          `Calibration sample '${label}': '${a.origin}' is array #${a.index}, but the model has only ${required.length} input${required.length === 1 ? "" : "s"} (${required.map((i) => i.name).join(", ")}).`,
        );
      }
      name = input.name;
    }
    if (given.has(name)) {
      throw new VnmcError(Codes.CALIB_INPUT_NAME, `Calibration sample '${label}' gives input '${name}' twice ('${given.get(name)!.origin}' and '${a.origin}').`);
    }
    given.set(name, a);
  }
  for (const i of required) {
    if (!given.has(i.name)) {
      const got = [...given.keys()];
      throw new VnmcError(
        Codes.CALIB_INPUT_NAME,
        `Calibration sample '${label}' has no value for the model input '${i.name}' (it gives ${got.length ? got.join(", ") : "nothing"}; the model needs ${required.map((r) => r.name).join(", ")}).`,
      );
    }
  }
  const out: CalibInput[] = [];
  for (const input of inputs) {
    const a = given.get(input.name);
    if (!a) continue;
    checkArray(a, input);
    out.push({ name: input.name, dataType: a.dataType, dims: a.dims, data: a.data });
  }
  return out;
}

function checkArray(a: NamedArray, input: ModelInput): void {
  if (input.elemType !== undefined && input.elemType !== a.dataType) {
    throw new VnmcError(
      Codes.CALIB_DTYPE,
      `Calibration input '${input.name}' in '${a.origin}' is ${dataTypeName(a.dataType)}, but the model expects ${dataTypeName(input.elemType)}; convert it (e.g. arr.astype(np.${numpyName(input.elemType)})).`,
    );
  }
  const shape = input.shape;
  if (!shape) return;
  const want = `[${shape.map((d) => d ?? "?").join(", ")}]`;
  if (shape.length !== a.dims.length) {
    throw new VnmcError(
      Codes.CALIB_SHAPE,
      `Calibration input '${input.name}' in '${a.origin}' has shape [${a.dims.join(", ")}] (rank ${a.dims.length}), but the model's input is ${want} (rank ${shape.length}).`,
    );
  }
  shape.forEach((d, i) => {
    if (typeof d === "number" && d !== a.dims[i]) {
      throw new VnmcError(
        Codes.CALIB_SHAPE,
        `Calibration input '${input.name}' in '${a.origin}' has shape [${a.dims.join(", ")}], but the model's input is ${want} (dimension ${i} must be ${d}).`,
      );
    }
  });
}

/**
 * Opens `--calib`: "random:N", a folder, or one .npz/.npy/.pb file (one sample). Discovery and
 * option errors surface here; a sample's own problems when it is read.
 */
export function openCalibration(spec: string, model: Model, shapes: Record<string, number[]>): CalibrationSource {
  const inputs = modelInputs(model);
  const random = /^random:(.*)$/.exec(spec);
  if (random) {
    const n = /^\d+$/.test(random[1]!) ? Number(random[1]) : NaN;
    if (!(n >= 1 && n <= MAX_RANDOM_SAMPLES)) {
      throw new VnmcError(Codes.BAD_CALIB_OPTION, `--calib random:N needs a sample count N from 1 to ${MAX_RANDOM_SAMPLES} (got '${spec}').`, "usage");
    }
    const specs = inputSpecs(model, shapes);
    return {
      kind: "random", dataFree: true, count: n,
      description: `${n} random sample${n === 1 ? "" : "s"} (${specs.map((s) => `${s.name}=${s.dims.join("x")}`).join(" ")}; data-free)`,
      sample: (i) => ({
        label: `random #${i}`,
        inputs: randomInputs(specs, RANDOM_CALIB_SEED + i).map((g) => ({
          name: g.spec.name, dataType: g.spec.dataType, dims: g.spec.dims, data: new Uint8Array(g.data.buffer, g.data.byteOffset, g.data.byteLength),
        })),
      }),
    };
  }
  if (!existsSync(spec)) {
    throw new VnmcError(Codes.CALIB_NOT_FOUND, `The calibration data '${spec}' does not exist; give a folder of samples, an .npz/.npy/.pb file, or random:N.`);
  }
  const singleInput = inputs.filter((i) => i.required).length === 1;
  let refs: SampleRef[];
  if (statSync(spec).isDirectory()) {
    refs = discover(spec, singleInput);
  } else if (spec.endsWith(".npz")) {
    refs = [npzSample(spec, basename(spec))];
  } else if (spec.endsWith(".npy")) {
    refs = [singleFileSample(spec, basename(spec), () => readNpyFile(spec))];
  } else if (spec.endsWith(".pb")) {
    refs = [singleFileSample(spec, basename(spec), () => readTensorProtoFile(spec))];
  } else {
    throw new VnmcError(Codes.CALIB_UNREADABLE, `The calibration file '${spec}' is not a folder, .npz, .npy or .pb file.`);
  }
  if (refs.length === 0) {
    throw new VnmcError(
      Codes.CALIB_EMPTY,
      `The calibration folder '${spec}' holds no samples: expected sample folders with input_0.pb, ... (the ONNX test-data layout) or .npy files, or .npz files.`,
    );
  }
  return {
    kind: "files", dataFree: false, count: refs.length,
    description: `${refs.length} sample${refs.length === 1 ? "" : "s"} from ${spec}`,
    sample: (i) => {
      const ref = refs[i]!;
      return { label: ref.label, inputs: matchSample(ref.label, ref.load(), inputs) };
    },
  };
}
