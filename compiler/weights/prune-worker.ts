import { parentPort } from "node:worker_threads";
import { runPruneJob, type PruneJob } from "./prune-job.js";
import { Scratch } from "./scratch.js";

const scratch = new Scratch();

/** Worker thread entry: prunes and packs weights sent by the PrunePool. */
parentPort!.on("message", (msg: { id: number; job: PruneJob }) => {
  try {
    const out = runPruneJob(msg.job, scratch);
    const transfer = [out.values.buffer, out.columns.buffer, out.meta.buffer];
    if (out.src) transfer.push(out.src.buffer);
    parentPort!.postMessage({ id: msg.id, out }, transfer as ArrayBuffer[]);
  } catch (e) {
    parentPort!.postMessage({ id: msg.id, error: (e as Error).message });
  }
});
