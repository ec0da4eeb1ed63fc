/** Messages between `vnmc build` and its worker threads. */
import type { ProgressEvent } from "../compile.js";
import type { ErrorKind } from "../diagnostics.js";
import type { CompileReport } from "../report.js";
import type { ModelCompileOptions } from "./config.js";

export interface WorkerRequest {
  id: number;
  input: string;
  output: string;
  options: ModelCompileOptions;
}

export type WorkerReply =
  | { id: number; type: "progress"; phase: ProgressEvent["phase"] }
  | { id: number; type: "done"; report: CompileReport }
  | { id: number; type: "error"; error: { message: string; code?: string; kind?: ErrorKind; stack?: string } };
