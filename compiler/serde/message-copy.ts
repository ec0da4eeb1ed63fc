/**
 * A shallow copy of a protobuf-es message that keeps its prototype (proto2 field presence) and its
 * unknown fields, with some fields replaced. Used to carry the fields vnmc does not model through a
 * load/save round trip untouched. A scalar override equal to the field's default leaves the field
 * unset, so nothing is written that the input did not have.
 */
export function copyMessage<T extends object>(msg: T, overrides: Partial<T>): T {
  const out = Object.assign(Object.create(Object.getPrototypeOf(msg)), msg) as T;
  for (const [k, v] of Object.entries(overrides)) {
    const empty = v === "" || v === 0 || v === 0n || v === false || v === undefined || (v instanceof Uint8Array && v.byteLength === 0);
    if (empty) delete (out as Record<string, unknown>)[k];
    else (out as Record<string, unknown>)[k] = v;
  }
  return out;
}
