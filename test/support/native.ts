import { nativeStatus } from "../../compiler/runtime/native-lib.js";

let warned = false;

/**
 * For `before` hooks of tests that need the native runtime (libvnmc_ort.so + vnmc_node.node): skips
 * the suite with a clear message when it is not built. `npm test` builds it wherever cmake and a C++
 * compiler exist; VNMC_REQUIRE_NATIVE=1 turns a missing build into a failure instead of a skip.
 */
export function requireNative(ctx: Mocha.Context): void {
  const st = nativeStatus();
  if (st.available) return;
  if (process.env.VNMC_REQUIRE_NATIVE === "1") throw new Error(`VNMC_REQUIRE_NATIVE=1 but the native runtime is not available: ${st.reason}`);
  if (!warned) {
    warned = true;
    process.stderr.write(`\n  [skip] tests of the native runtime skipped: ${st.reason}.\n\n`);
  }
  ctx.skip();
}

export function nativeAvailable(): boolean {
  return nativeStatus().available;
}
