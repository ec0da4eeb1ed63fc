import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { PermuteJob, PermuteOutput } from "./permute-job.js";
import type { PruneJob, PruneOutput } from "./prune-job.js";

/** What a worker does: prune and pack a weight, or search its channel permutations. */
export type WorkerTask = { kind: "prune"; job: PruneJob } | { kind: "permute"; job: PermuteJob };

interface Waiting {
  task: WorkerTask;
  resolve: (o: never) => void;
  reject: (e: Error) => void;
}

/**
 * A small pool of worker threads that prune weights in parallel. Workers are started on first use and
 * do not keep the process alive; `close()` stops them.
 */
export class PrunePool {
  private readonly idle: Worker[] = [];
  private readonly all: Worker[] = [];
  private readonly queue: Waiting[] = [];
  private readonly running = new Map<Worker, Waiting>();
  private nextId = 0;

  constructor(readonly size = Math.max(1, Math.min(availableParallelism(), 8))) {}

  run(job: PruneJob): Promise<PruneOutput> {
    return this.submit({ kind: "prune", job });
  }

  search(job: PermuteJob): Promise<PermuteOutput> {
    return this.submit({ kind: "permute", job });
  }

  private submit<T>(task: WorkerTask): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ task, resolve: resolve as (o: never) => void, reject });
      this.pump();
    });
  }

  private spawn(): Worker {
    const w = new Worker(new URL("./prune-worker.js", import.meta.url));
    w.unref();
    w.on("message", (msg: { out?: never; error?: string }) => {
      const task = this.running.get(w);
      this.running.delete(w);
      this.idle.push(w);
      if (task) msg.error !== undefined ? task.reject(new Error(msg.error)) : task.resolve(msg.out!);
      this.pump();
    });
    w.on("error", (e) => {
      const task = this.running.get(w);
      this.running.delete(w);
      this.all.splice(this.all.indexOf(w), 1);
      task?.reject(e);
      this.pump();
    });
    this.all.push(w);
    return w;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const w = this.idle.pop() ?? (this.all.length < this.size ? this.spawn() : undefined);
      if (!w) return;
      const task = this.queue.shift()!;
      this.running.set(w, task);
      w.postMessage({ id: this.nextId++, task: task.task });
    }
  }

  async close(): Promise<void> {
    const workers = this.all.splice(0);
    this.idle.length = 0;
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
