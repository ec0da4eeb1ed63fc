/**
 * A shallow copy of a protobuf-es message that keeps its prototype (proto2 field presence) and its
 * unknown fields, with some fields replaced. Used to carry the fields vnmc does not model through a
 * load/save round trip untouched.
 */
export function copyMessage<T extends object>(msg: T, overrides: Partial<T>): T {
  const out = Object.assign(Object.create(Object.getPrototypeOf(msg)), msg) as T;
  return Object.assign(out, overrides);
}
