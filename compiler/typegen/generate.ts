/**
 * Typed model modules: for a compiled model, a TypeScript module (written with ts-morph) that gives its
 * inputs' and outputs' names, element types and shapes (symbolic dims as named parameters) and a
 * `createSession()` whose `run()` takes and returns typed tensors — on vnmc's native runtime
 * (`vnmc/runtime`) when it is built, else onnxruntime-node with the model's fallback function.
 * The module type-checks under `tsc --strict` (test/typegen).
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, relative, resolve, sep } from "node:path";
import { IndentationText, Project, QuoteKind, VariableDeclarationKind, type WriterFunction } from "ts-morph";
import { Codes, VnmcError } from "../diagnostics.js";
import { DataType } from "../ir/dtype.js";
import type { Value } from "../ir/value.js";
import { readModelFile } from "../serde/read.js";
import { VERSION } from "../version.js";

export interface TypegenOptions {
  /**
   * "auto" (default): the module tries `vnmc/runtime` first and falls back to onnxruntime-node;
   * "onnxruntime": the module uses onnxruntime-node only (no import of vnmc, e.g. where vnmc is not installed at run time).
   */
  runtime?: "auto" | "onnxruntime";
  /** How the module finds the model: relative to itself (default), or this path/URL string verbatim. */
  modelPath?: string;
}

/** A model input or output as the module describes it. */
export interface TensorSignature {
  name: string;
  /** onnxruntime's tensor type name (float32, int64, ...), or the ONNX name when onnxruntime-node has none. */
  type: string;
  /** Numbers for fixed dims, names for symbolic ones. */
  shape: (number | string)[] | null;
  /** True when onnxruntime-node has a TypedTensor for the type. */
  typed: boolean;
}

const ORT_TYPES: Record<number, string> = {
  [DataType.FLOAT]: "float32", [DataType.UINT8]: "uint8", [DataType.INT8]: "int8", [DataType.UINT16]: "uint16",
  [DataType.INT16]: "int16", [DataType.INT32]: "int32", [DataType.INT64]: "int64", [DataType.STRING]: "string",
  [DataType.BOOL]: "bool", [DataType.FLOAT16]: "float16", [DataType.DOUBLE]: "float64", [DataType.UINT32]: "uint32",
  [DataType.UINT64]: "uint64", [DataType.UINT4]: "uint4", [DataType.INT4]: "int4",
};
const ONNX_NAMES = Object.fromEntries(Object.entries(DataType).map(([k, v]) => [v, k.toLowerCase()]));

function signature(v: Value): TensorSignature {
  const elem = v.type?.elemType;
  const ort = elem !== undefined ? ORT_TYPES[elem] : undefined;
  const shape = v.type?.shape ? v.type.shape.map((d, i) => (typeof d === "number" && d >= 0 ? d : typeof d === "string" && d !== "" ? d : `${v.name}_dim${i}`)) : null;
  return { name: v.name, type: ort ?? (elem !== undefined ? ONNX_NAMES[elem] ?? "unknown" : "unknown"), shape, typed: ort !== undefined };
}

/** The inputs and outputs of a model file (graph inputs that are initializers are left out). */
export function modelSignature(modelFile: string): { inputs: TensorSignature[]; outputs: TensorSignature[] } {
  const { model } = readModelFile(modelFile);
  const g = model.graph;
  return { inputs: g.inputs.filter((v) => !v.initializer).map(signature), outputs: g.outputs.map(signature) };
}

const IDENT = /^[A-Za-z_$][\w$]*$/;
const RESERVED = new Set(["break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do", "else", "enum", "export", "extends", "false", "finally", "for", "function", "if", "import", "in", "instanceof", "new", "null", "return", "super", "switch", "this", "throw", "true", "try", "typeof", "var", "void", "while", "with"]);
/** A property key: bare when an identifier, else quoted. */
const key = (name: string): string => (IDENT.test(name) ? name : JSON.stringify(name));

/** Named parameters for the symbolic dims: identifiers, unique, in order of first use. */
function dimNames(sigs: TensorSignature[]): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<string>();
  for (const s of sigs) {
    for (const d of s.shape ?? []) {
      if (typeof d !== "string" || out.has(d)) continue;
      let id = d.replace(/[^\w$]+/g, "_").replace(/^(\d)/, "_$1") || "dim";
      if (RESERVED.has(id)) id = `${id}_`;
      let unique = id;
      for (let i = 2; used.has(unique); i++) unique = `${id}${i}`;
      used.add(unique);
      out.set(d, unique);
    }
  }
  return out;
}

function tensorType(s: TensorSignature): string {
  return s.typed ? `TypedTensor<${JSON.stringify(s.type)}>` : "Tensor";
}

function doc(s: TensorSignature): string {
  return `${s.type} [${s.shape ? s.shape.join(", ") : "unknown rank"}]`;
}

/** The module's text for the compiled model `modelFile`, to be written at `outFile`. */
export function generateModelTypes(modelFile: string, outFile: string, opts: TypegenOptions = {}): string {
  const sig = modelSignature(modelFile);
  const dims = dimNames([...sig.inputs, ...sig.outputs]);
  const runtime = opts.runtime ?? "auto";
  let rel = relative(dirname(resolve(outFile)), resolve(modelFile)).split(sep).join("/");
  if (!rel.startsWith(".")) rel = `./${rel}`;

  const project = new Project({ useInMemoryFileSystem: true, manipulationSettings: { indentationText: IndentationText.TwoSpaces, quoteKind: QuoteKind.Double } });
  const file = project.createSourceFile("/model.ts");
  if (opts.modelPath === undefined) file.addImportDeclaration({ moduleSpecifier: "node:url", namedImports: ["fileURLToPath"] });
  file.addImportDeclaration({ moduleSpecifier: "onnxruntime-node", namedImports: ["InferenceSession", { name: "Tensor", isTypeOnly: true }, { name: "TypedTensor", isTypeOnly: true }] });

  file.addVariableStatement({
    isExported: true, declarationKind: VariableDeclarationKind.Const,
    docs: ["The compiled model's path."],
    declarations: [{ name: "modelPath", type: "string", initializer: opts.modelPath !== undefined ? JSON.stringify(opts.modelPath) : `fileURLToPath(new URL(${JSON.stringify(rel)}, import.meta.url))` }],
  });

  const table = (list: TensorSignature[]): WriterFunction => (w) => {
    w.write("{").newLine();
    w.indent(() => {
      for (const s of list) w.writeLine(`${key(s.name)}: { type: ${JSON.stringify(s.type)}, shape: ${s.shape ? JSON.stringify(s.shape) : "null"} },`);
    });
    w.write("} as const");
  };
  file.addVariableStatement({ isExported: true, declarationKind: VariableDeclarationKind.Const, docs: ["Element type and shape of each input (names for symbolic dims)."], declarations: [{ name: "inputs", initializer: table(sig.inputs) }] });
  file.addVariableStatement({ isExported: true, declarationKind: VariableDeclarationKind.Const, docs: ["Element type and shape of each output."], declarations: [{ name: "outputs", initializer: table(sig.outputs) }] });

  file.addInterface({
    name: "Dims", isExported: true, docs: ["The model's symbolic dimensions, as named parameters."],
    properties: [...dims.entries()].map(([orig, id]) => ({ name: id, type: "number", docs: [`The dimension '${orig}'.`] })),
  });
  file.addInterface({ name: "Inputs", isExported: true, properties: sig.inputs.map((s) => ({ name: key(s.name), type: tensorType(s), docs: [doc(s)] })) });
  file.addInterface({ name: "Outputs", isExported: true, properties: sig.outputs.map((s) => ({ name: key(s.name), type: tensorType(s), docs: [doc(s)] })) });

  const shapeOf = (s: TensorSignature): string => (s.shape ? `[${s.shape.map((d) => (typeof d === "number" ? String(d) : `dims.${dims.get(d)}`)).join(", ")}]` : "null");
  const usesDims = [...sig.inputs, ...sig.outputs].some((s) => s.shape?.some((d) => typeof d === "string"));
  for (const [name, list, what] of [["inputShapes", sig.inputs, "input"], ["outputShapes", sig.outputs, "output"]] as const) {
    file.addFunction({
      name, isExported: true, docs: [`The concrete shape of every ${what} for the given symbolic dims.`],
      parameters: [{ name: usesDims ? "dims" : "_dims", type: "Dims" }],
      returnType: `{ ${list.map((s) => `${key(s.name)}: ${s.shape ? "number[]" : "null"}`).join("; ")} }`,
      statements: `return { ${list.map((s) => `${key(s.name)}: ${shapeOf(s)}`).join(", ")} };`,
    });
  }

  file.addInterface({
    name: "ModelSession", isExported: true,
    properties: [{ name: "backend", isReadonly: true, type: `"native" | "onnxruntime"`, docs: ['"native": vnmc\'s kernels (vnmc/runtime); "onnxruntime": onnxruntime-node, through the fallback function.'] }],
    methods: [
      { name: "run", parameters: [{ name: "feeds", type: "Inputs" }], returnType: "Promise<Outputs>" },
      { name: "release", returnType: "Promise<void>" },
    ],
  });
  file.addInterface({
    name: "CreateSessionOptions", isExported: true,
    properties: [
      { name: "backend", hasQuestionToken: true, type: `"auto" | "native" | "onnxruntime"`, docs: ['"auto" (default): vnmc\'s native runtime when it is built, else onnxruntime-node.'] },
      { name: "intraOpNumThreads", hasQuestionToken: true, type: "number" },
    ],
  });
  const nativeBranch = runtime === "auto"
    ? `if (backend !== "onnxruntime") {
  let reason: string;
  try {
    const rt = await import("vnmc/runtime");
    const status = rt.nativeStatus();
    if (status.available) {
      const s = await rt.NativeSession.create(modelPath, threads);
      return {
        backend: "native",
        run: async (feeds) => (await s.run(feeds as unknown as Record<string, Tensor>)) as unknown as Outputs,
        release: () => s.release(),
      };
    }
    reason = status.reason ?? "the native runtime is not built";
  } catch (e) {
    reason = String(e);
  }
  if (backend === "native") throw new Error(\`vnmc's native runtime is not available: \${reason}\`);
}
`
    : `if (backend === "native") throw new Error("This module was generated for onnxruntime-node only; regenerate it with runtime \\"auto\\".");\n`;
  file.addFunction({
    name: "createSession", isExported: true, isAsync: true,
    docs: ["A session for the model whose run() takes and returns the model's typed tensors."],
    parameters: [{ name: "options", type: "CreateSessionOptions", initializer: "{}" }],
    returnType: "Promise<ModelSession>",
    statements: `const backend = options.backend ?? "auto";
const threads = options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {};
${nativeBranch}const s = await InferenceSession.create(modelPath, threads);
return {
  backend: "onnxruntime",
  run: async (feeds) => (await s.run(feeds as unknown as InferenceSession.FeedsType)) as unknown as Outputs,
  release: () => s.release(),
};`,
  });
  file.formatText({ indentSize: 2 });
  return `// Generated by vnmc ${VERSION} from ${basename(modelFile)}; do not edit (regenerate with vnmc build).\n${file.getFullText()}`;
}

/** Writes the typed module for `modelFile` at `outFile` (temporary file + rename). */
export function writeModelTypes(modelFile: string, outFile: string, opts: TypegenOptions = {}): void {
  let text: string;
  try {
    text = generateModelTypes(modelFile, outFile, opts);
  } catch (e) {
    if (e instanceof VnmcError) throw e;
    throw new VnmcError(Codes.WRITE_FAILED, `Could not generate the typed module for ${basename(modelFile)}: ${(e as Error).message}.`);
  }
  mkdirSync(dirname(resolve(outFile)), { recursive: true });
  const tmp = `${outFile}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, outFile);
}
