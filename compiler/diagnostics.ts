/**
 * Diagnostics: every message vnmc gives has a stable code. Passes report them to a sink instead of
 * printing; the CLI renders them as text or JSON.
 */
export type Severity = "error" | "warning" | "info";

export interface Diagnostic {
  code: string;
  severity: Severity;
  message: string;
  /** The node the diagnostic is about, when there is one. */
  node?: string;
  /** The pass that reported it. */
  pass?: string;
}

export class DiagnosticSink {
  readonly items: Diagnostic[] = [];
  report(d: Diagnostic): void {
    this.items.push(d);
  }
  get errors(): Diagnostic[] {
    return this.items.filter((d) => d.severity === "error");
  }
  get warnings(): Diagnostic[] {
    return this.items.filter((d) => d.severity === "warning");
  }
}

/** Exit code of the CLI for an error: 1 for a failure, 2 for a usage error. */
export type ErrorKind = "usage" | "input" | "internal";

/** A user-facing error: one sentence that says what is wrong and what to do, with a stable code. */
export class VnmcError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly kind: ErrorKind = "input",
  ) {
    super(message);
    this.name = "VnmcError";
  }
}

/** Stable codes. Adding is fine; never renumber. */
export const Codes = {
  // usage (exit 2)
  USAGE: "VNMC-U001",
  BAD_VNM: "VNMC-U002",
  BAD_SHAPE_OPTION: "VNMC-U003",
  OUTPUT_IS_INPUT: "VNMC-U004",
  BAD_CALIB_OPTION: "VNMC-U005",
  SCORE_NEEDS_CALIB: "VNMC-U006",
  BAD_SCORE: "VNMC-U007",
  BAD_PERMUTE_TIME: "VNMC-U008",
  /** --sparsity, --speedup or --tokens out of range (docs/choosing-vnm.md). */
  BAD_TARGET: "VNMC-U009",
  /** --vnm with --sparsity/--speedup, both targets, or --per-layer without one. */
  TARGET_CONFLICT: "VNMC-U010",
  /** No candidate V:N:M reaches the --sparsity or --speedup asked for. */
  UNREACHABLE_TARGET: "VNMC-U011",
  /** --method other than select or sparsegpt. */
  BAD_METHOD: "VNMC-U012",
  /** --method sparsegpt without --calib. */
  METHOD_NEEDS_CALIB: "VNMC-U013",
  /** --method sparsegpt with an option it does not combine with (--score, --permute). */
  METHOD_CONFLICT: "VNMC-U014",
  /** vnmc build: the config file is missing, unreadable or has a bad key or value (the message names it). */
  BAD_CONFIG: "VNMC-U015",
  /** A sparsegpt-only option (--sequential / --no-sequential, --refit / --no-refit, --refit-sweeps) without --method sparsegpt. */
  SEQUENTIAL_NEEDS_SPARSEGPT: "VNMC-U016",
  // input problems (exit 1)
  FILE_NOT_FOUND: "VNMC-E001",
  NOT_ONNX: "VNMC-E002",
  BAD_TENSOR: "VNMC-E003",
  EXTERNAL_DATA_ESCAPES: "VNMC-E004",
  EXTERNAL_DATA_MISSING: "VNMC-E005",
  EXTERNAL_DATA_RANGE: "VNMC-E006",
  UNDEFINED_VALUE: "VNMC-E007",
  WRITE_FAILED: "VNMC-E008",
  VERIFY_FAILED: "VNMC-E009",
  VERIFY_RUNTIME: "VNMC-E010",
  OPSET_TOO_OLD: "VNMC-E011",
  // bad calibration data (exit 1)
  CALIB_NOT_FOUND: "VNMC-E012",
  CALIB_EMPTY: "VNMC-E013",
  CALIB_UNREADABLE: "VNMC-E014",
  CALIB_INPUT_NAME: "VNMC-E015",
  CALIB_SHAPE: "VNMC-E016",
  CALIB_DTYPE: "VNMC-E017",
  CALIB_RUNTIME: "VNMC-E018",
  CALIB_NONFINITE: "VNMC-E019",
  // running models: vnmc run / bench, vnmc/runtime (exit 1)
  NATIVE_UNAVAILABLE: "VNMC-R001",
  RUNTIME_LOAD: "VNMC-R002",
  RUNTIME_RUN: "VNMC-R003",
  // warnings and notes
  NO_CANDIDATES: "VNMC-W001",
  EXTERNAL_DATA_FORCED: "VNMC-W002",
  VERIFY_SKIPPED: "VNMC-W003",
  CALIB_DATA_FREE: "VNMC-W004",
  CALIB_UNOBSERVED: "VNMC-W005",
  /** V and M were chosen by the kept-score fraction: no calibration rows for the output error. */
  CHOICE_WITHOUT_CALIB: "VNMC-W006",
  /** The per-layer search thinned its Pareto front: the choice is near-optimal, not proven optimal. */
  CHOICE_APPROXIMATE: "VNMC-W007",
  /** With --calib but no --method/--score, sparsegpt (the default) was not used: data-free calibration, or too much memory. */
  METHOD_DEFAULT_SELECT: "VNMC-W008",
  // reasons a MatMul/Gemm was not rewritten (info)
  SKIP_ACTIVATION_WEIGHT: "VNMC-S001",
  SKIP_WEIGHT_RANK: "VNMC-S002",
  SKIP_TOO_SMALL: "VNMC-S003",
  SKIP_EXCLUDED: "VNMC-S004",
  SKIP_SHAPE: "VNMC-S005",
  SKIP_DTYPE: "VNMC-S006",
  SKIP_ALREADY_SPARSE_OP: "VNMC-S007",
  // channel permutation, --permute (info, warning)
  PERMUTE_FOLD_PLANNED: "VNMC-P001",
  PERMUTE_FOLDED: "VNMC-P002",
  PERMUTE_TIME_CAPPED: "VNMC-P003",
  // vnmc build, deploy and the bundler plugin (exit 1)
  /** A compiled model missed a quality budget of its config (maxOutputError, minCosine, minTop1Agreement). */
  BUDGET_MISSED: "VNMC-B001",
  /** One or more models of a build failed (each failure is listed with its own code). */
  BUILD_FAILED: "VNMC-B002",
  /** vnmc deploy: the model is not a compiled model, or the target's files could not be written. */
  DEPLOY_FAILED: "VNMC-B003",
} as const;
