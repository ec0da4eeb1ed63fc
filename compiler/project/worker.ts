/** A `vnmc build` worker thread: compiles the models it is sent, one at a time, with the library API. */
import { parentPort } from "node:worker_threads";
import { compile } from "../api.js";
import type { ProgressEvent } from "../compile.js";
import { VnmcError } from "../diagnostics.js";
import type { WorkerRequest, WorkerReply } from "./protocol.js";

const port = parentPort!;
port.on("message", async (req: WorkerRequest) => {
  const post = (r: WorkerReply): void => port.postMessage(r);
  let phase: ProgressEvent["phase"] | undefined;
  try {
    const { report } = await compile(req.input, {
      ...req.options,
      output: req.output,
      // Phase changes only: per-tensor write events would flood the channel.
      onProgress: (e) => {
        if (e.phase !== phase) post({ id: req.id, type: "progress", phase: (phase = e.phase) });
      },
    });
    post({ id: req.id, type: "done", report });
  } catch (e) {
    const err = e as Error;
    post({
      id: req.id, type: "error",
      error: { message: String(err?.message ?? e), code: e instanceof VnmcError ? e.code : undefined, kind: e instanceof VnmcError ? e.kind : undefined, stack: err?.stack },
    });
  }
});
