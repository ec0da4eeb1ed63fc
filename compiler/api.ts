/**
 * The library API: `import { compile } from "vnmc"`. The CLI's `vnmc compile` and `vnmc build`, the
 * bundler plugin and `vnmc deploy` are thin layers over it and over compileFile.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { type CompileOptions, compileFile, defaultOutputPath, type ProgressEvent } from "./compile.js";
import { Codes, VnmcError } from "./diagnostics.js";
import type { CompileReport } from "./report.js";

/**
 * Options of `compile()`: every option of `vnmc compile` (CompileOptions, so options added there
 * appear here too), plus what only a library call has.
 */
export interface CompileApiOptions extends Omit<CompileOptions, "output" | "onProgress"> {
  /**
   * Where to write the compiled model (written to a temporary file and renamed: never half-written).
   * Default for a path input: `<input>.vnm.onnx` next to it. Default for a bytes input: nothing is
   * written and the result holds the bytes.
   */
  output?: string;
  /** Return the compiled model's bytes in the result (default: true when nothing is written). */
  returnBytes?: boolean;
  /** Called at each phase and step (load, calibrate, choose, permute, compile, write, verify, done). */
  onProgress?: (event: ProgressEvent) => void;
  /** Abort the compile: it stops at the next step, removes what it wrote and rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface CompileApiResult {
  /** The compiled model's path, when written. */
  outputPath?: string;
  /** The compiled model (with `returnBytes`, or a bytes input without `output`). */
  bytes?: Uint8Array;
  /** With `externalData` and bytes returned: the weights file the model refers to as `externalDataName`. */
  externalData?: Uint8Array;
  externalDataName?: string;
  report: CompileReport;
}

/** Name the model is compiled under when given as bytes (shows in the report's `input`). */
const BYTES_INPUT = "<bytes>";

function checkSignal(signal: AbortSignal | undefined): void {
  signal?.throwIfAborted();
}

/**
 * Compile an ONNX model (a path, or its bytes) to V:N:M sparsity. Resolves to the typed report and,
 * as asked, the output path and/or the compiled bytes. Errors are VnmcError with a stable `code` and
 * a one-sentence message that says what to do; an abort rejects with `signal.reason` (an AbortError
 * unless given) and leaves no files behind.
 */
export async function compile(input: string | Uint8Array | ArrayBuffer, options: CompileApiOptions = {}): Promise<CompileApiResult> {
  const { signal, returnBytes, onProgress, output, ...rest } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new VnmcError(Codes.USAGE, "The signal option must be an AbortSignal (e.g. new AbortController().signal).", "usage");
  }
  checkSignal(signal);
  const bytesIn = input instanceof ArrayBuffer ? new Uint8Array(input) : input instanceof Uint8Array ? input : undefined;
  if (bytesIn === undefined && typeof input !== "string") {
    throw new VnmcError(Codes.USAGE, "compile() needs the model as a file path or as its bytes (a Uint8Array); pass one of those.", "usage");
  }
  if (bytesIn !== undefined && bytesIn.byteLength === 0) {
    throw new VnmcError(Codes.NOT_ONNX, "The model bytes are empty; pass the contents of an .onnx file.", "input");
  }
  if (typeof input === "string" && input.trim() === "") {
    throw new VnmcError(Codes.USAGE, "The model path is empty; pass the path of an .onnx file.", "usage");
  }
  if (typeof input === "string" && !existsSync(input)) {
    throw new VnmcError(Codes.FILE_NOT_FOUND, `Cannot find '${input}'; check the path to the .onnx model.`, "input");
  }
  const wantBytes = returnBytes ?? (output === undefined && bytesIn !== undefined);
  // Private folder for a bytes input and for outputs only returned, removed whatever happens.
  const needTemp = bytesIn !== undefined || (output === undefined && wantBytes);
  const temp = needTemp ? mkdtempSync(join(tmpdir(), "vnmc-api-")) : undefined;
  try {
    let inputPath: string;
    if (bytesIn !== undefined) {
      inputPath = join(temp!, "model.onnx");
      writeFileSync(inputPath, bytesIn);
    } else {
      inputPath = input as string;
    }
    const outputPath = output !== undefined ? resolve(output) : wantBytes ? join(temp!, "model.vnm.onnx") : defaultOutputPath(inputPath);
    const progress = (e: ProgressEvent): void => {
      // Abort between steps: compileFile removes its staging folder in `finally`. Once the output is
      // in place ("done") the compile has finished, so it is returned rather than undone.
      if (e.phase !== "done") checkSignal(signal);
      onProgress?.(e);
    };
    const compileOpts: CompileOptions = { ...rest, output: outputPath, onProgress: progress };
    let report: CompileReport;
    try {
      ({ report } = await compileFile(inputPath, compileOpts));
    } catch (e) {
      // An abort thrown inside a step may come back wrapped (e.g. as a write error): report the abort.
      if (signal?.aborted) throw signal.reason;
      throw e;
    }
    const result: CompileApiResult = { report };
    if (bytesIn !== undefined) report.input = BYTES_INPUT;
    if (output !== undefined) result.outputPath = outputPath;
    else if (!wantBytes) result.outputPath = outputPath;
    else report.output = BYTES_INPUT;
    if (wantBytes) {
      result.bytes = new Uint8Array(readFileSync(outputPath));
      const data = `${outputPath}.data`;
      if (existsSync(data)) {
        result.externalData = new Uint8Array(readFileSync(data));
        result.externalDataName = `${basename(outputPath)}.data`;
      }
    }
    return result;
  } finally {
    if (temp) rmSync(temp, { recursive: true, force: true });
  }
}
