import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ortRuntimePath } from "../../compiler/runtime/native-lib.js";
import { requireNative } from "../support/native.js";

const CHILD = fileURLToPath(new URL("../support/side-by-side-child.js", import.meta.url));

describe("runtime: the addon and onnxruntime-node side by side in one process", function () {
  this.timeout(120_000);
  before(function () {
    requireNative(this);
  });

  for (const order of ["ort-first", "native-first"] as const) {
    it(`one libonnxruntime in the process, both working concurrently (${order})`, () => {
      const r = spawnSync(process.execPath, [CHILD, order], { encoding: "utf8" });
      expect(r.status, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { mapped: Array<{ path: string }>; nativeVersion: string; ortNodeVersion: string; maxRelDiff: number };
      // Exactly one copy of the runtime is mapped, and it is the file onnxruntime-node ships.
      expect(out.mapped.length, JSON.stringify(out.mapped)).to.equal(1);
      expect(out.mapped[0]!.path).to.equal(ortRuntimePath());
      expect(out.nativeVersion).to.match(/^1\.\d+\.\d+/);
      // The packed layer on vnmc's kernel equals the dense layer in onnxruntime-node's MatMul.
      expect(out.maxRelDiff).to.be.at.most(1e-5);
    });
  }
});
