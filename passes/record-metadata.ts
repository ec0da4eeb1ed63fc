import type { CompileState } from "../compiler/compile-state.js";
import type { Model } from "../compiler/ir/model.js";
import type { Pass, PassContext } from "../compiler/pass/pass.js";

/** Records vnmc's version and the options that shaped the output in the model's metadata_props. */
export class RecordMetadata implements Pass<CompileState> {
  readonly name = "record-metadata";
  constructor(private readonly version: string, private readonly options: Record<string, unknown>) {}

  run(model: Model, ctx: PassContext<CompileState>): { modified: boolean } {
    model.setMetadata("vnmc.version", this.version);
    model.setMetadata("vnmc.options", JSON.stringify(this.options));
    model.setMetadata("vnmc.layers", String(ctx.state.candidates.length));
    return { modified: true };
  }
}
