/**
 * Reusable large buffers. On the VMs vnmc runs on, first touching fresh memory costs about as much as
 * the pruning itself (page faults), so a worker reuses its buffers from one weight to the next.
 */
export class Scratch {
  private readonly buffers = new Map<string, ArrayBuffer>();

  /** A zero-offset view of at least `bytes` bytes (contents undefined), reused across calls by name. */
  bytes(name: string, bytes: number): Uint8Array {
    let b = this.buffers.get(name);
    if (!b || b.byteLength < bytes) {
      b = new ArrayBuffer(Math.ceil(bytes / 4096) * 4096);
      this.buffers.set(name, b);
    }
    return new Uint8Array(b, 0, bytes);
  }
}
