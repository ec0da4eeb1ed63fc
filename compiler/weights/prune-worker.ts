import { parentPort } from "node:worker_threads";
import { runPermuteJob } from "./permute-job.js";
import type { WorkerTask } from "./prune-pool.js";
import { runPruneJob } from "./prune-job.js";
import { Scratch } from "./scratch.js";

const scratch = new Scratch();

/** Worker thread entry: prunes and packs weights, or searches their permutations, for the PrunePool. */
parentPort!.on("message", (msg: { id: number; task: WorkerTask }) => {
  try {
    if (msg.task.kind === "permute") {
      const out = runPermuteJob(msg.task.job, scratch);
      parentPort!.postMessage({ id: msg.id, out }, [out.input.buffer, out.output.buffer] as ArrayBuffer[]);
      return;
    }
    const out = runPruneJob(msg.task.job, scratch);
    const transfer = [out.values.buffer, out.columns.buffer, out.meta.buffer];
    if (out.src) transfer.push(out.src.buffer);
    if (out.rowIndex) transfer.push(out.rowIndex.buffer);
    parentPort!.postMessage({ id: msg.id, out }, transfer as ArrayBuffer[]);
  } catch (e) {
    parentPort!.postMessage({ id: msg.id, error: (e as Error).message });
  }
});
