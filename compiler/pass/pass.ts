import type { Diagnostic, DiagnosticSink, Severity } from "../diagnostics.js";
import type { Model } from "../ir/model.js";

/** What every pass gets: a place to report diagnostics and shared per-compilation state. */
export interface PassContext<State = unknown> {
  diagnostics: DiagnosticSink;
  state: State;
}

export interface PassResult {
  modified: boolean;
}

/** A named transformation of the IR. Passes never print: they report diagnostics with codes. */
export interface Pass<State = unknown> {
  readonly name: string;
  run(model: Model, ctx: PassContext<State>): PassResult;
}

/** Report helper that stamps the pass name onto each diagnostic. */
export function reporter(pass: string, ctx: PassContext<unknown>) {
  return (severity: Severity, code: string, message: string, node?: string): void => {
    const d: Diagnostic = { code, severity, message, pass };
    if (node !== undefined) d.node = node;
    ctx.diagnostics.report(d);
  };
}
