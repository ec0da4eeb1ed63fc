import { VnmcError } from "../diagnostics.js";
import type { Model } from "../ir/model.js";
import { checkModelInvariants } from "./invariants.js";
import type { Pass, PassContext } from "./pass.js";

export interface PassTiming {
  pass: string;
  ms: number;
  modified: boolean;
}

/** Runs passes in order, times them, and checks the IR's invariants after each one that changed it. */
export class PassManager<State> {
  readonly timings: PassTiming[] = [];
  constructor(private readonly passes: Pass<State>[], private readonly checkInvariants = true) {}

  run(model: Model, ctx: PassContext<State>): boolean {
    let any = false;
    for (const pass of this.passes) {
      const t0 = performance.now();
      let result;
      try {
        result = pass.run(model, ctx);
      } catch (e) {
        if (e instanceof VnmcError) throw e;
        throw new Error(`pass '${pass.name}' failed: ${(e as Error).message}`, { cause: e });
      }
      this.timings.push({ pass: pass.name, ms: performance.now() - t0, modified: result.modified });
      if (result.modified && this.checkInvariants) {
        const problems = checkModelInvariants(model);
        if (problems.length) throw new Error(`pass '${pass.name}' left the IR inconsistent: ${problems.slice(0, 5).join("; ")}`);
      }
      any ||= result.modified;
    }
    return any;
  }
}
