/**
 * vnmc's library entry point: `import { compile, build } from "vnmc"`. Types are published with it
 * (package.json "exports" / "types"). The runtime (NativeSession) is `vnmc/runtime`.
 */
export { compile, type CompileApiOptions, type CompileApiResult } from "./api.js";
export type { CompileOptions, ProgressEvent } from "./compile.js";
export { DEFAULT_MIN_SIZE, DEFAULT_VNM } from "./compile.js";
export type { CompileReport, LayerRow, LayerPermutation } from "./report.js";
export type { VerificationResult, CalibrationQuality } from "./verify/verify.js";
export type { OutputComparison } from "./verify/compare.js";
export type { CalibrationSummary } from "./calibration/calibrate.js";
export { Codes, VnmcError, type Diagnostic, type ErrorKind, type Severity } from "./diagnostics.js";
export { VERSION } from "./version.js";
export { build, BuildError, type BuildEvent, type BuildOptions, type BuildResult, type ModelBuildResult } from "./project/build.js";
export { defineConfig, type BuildConfig, type ModelConfig, type ModelCompileOptions, type QualityBudget } from "./project/config.js";
export { checkBudget, qualityOf, type BudgetMiss, type QualityNumbers } from "./project/budget.js";
export { deploy, DEPLOY_TARGETS, type DeployOptions, type DeployResult, type DeployTarget } from "./deploy/deploy.js";
export { generateModelTypes, writeModelTypes, type TypegenOptions } from "./typegen/generate.js";
