/** Any phase/done/total event (compile's ProgressEvent, the benchmark's iterations, ...). */
export interface ProgressLike {
  phase: string;
  done: number;
  total: number;
}

/** A one-line progress bar on a TTY (stderr); silent elsewhere so logs and pipes stay clean. */
export function progressBar(stream: NodeJS.WriteStream): ((e: ProgressLike) => void) & { clear(): void } {
  let last = 0;
  let shown = false;
  const fn = (e: ProgressLike) => {
    if (!stream.isTTY) return;
    const now = Date.now();
    if (e.phase === "done") return fn.clear();
    if (now - last < 80 && e.done !== e.total) return;
    last = now;
    const width = 30;
    const frac = e.total > 0 ? Math.min(1, e.done / e.total) : 0;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, ".");
    stream.write(`\r${e.phase.padEnd(8)} [${bar}] ${e.done}/${e.total}`);
    shown = true;
  };
  fn.clear = () => {
    if (shown && stream.isTTY) stream.write("\r\x1b[2K");
    shown = false;
  };
  return fn;
}
