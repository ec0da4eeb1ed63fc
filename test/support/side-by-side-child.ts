/**
 * Child process of test/runtime/side-by-side.test.ts: loads onnxruntime-node and vnmc's addon in
 * the order given by argv[2] ("ort-first" | "native-first"), runs the same layer densely in
 * onnxruntime-node and packed in a NativeSession, side by side and concurrently, and prints JSON:
 * which libonnxruntime files are mapped, the runtime versions, and the largest difference.
 */
import { readFileSync } from "node:fs";
import { DataType } from "../../compiler/ir/dtype.js";
import { Graph, NameScope } from "../../compiler/ir/graph.js";
import { Model } from "../../compiler/ir/model.js";
import { InMemoryTensor } from "../../compiler/ir/tensor.js";
import { encodeModel } from "../../compiler/serde/write.js";
import { layerModel, randomLayer, TestRng } from "./packed-layer.js";

const order = process.argv[2];
const rng = new TestRng(21);
const K = 200, N = 72, T = 9;
const layer = randomLayer({ K, N, V: 32, M: 8, act: "float32", values: "float32", columns: "windowed", rowIndex: true, bias: true }, rng);

/** The same layer as a dense MatMul + Add, for onnxruntime-node. */
function denseModel(): Uint8Array {
  const g = new Graph("dense", new NameScope());
  const A = g.createValue("A", { elemType: DataType.FLOAT, shape: ["t", K] });
  g.inputs.push(A);
  const Wt = new Float32Array(K * N);
  for (let o = 0; o < N; o++) for (let k = 0; k < K; k++) Wt[k * N + o] = layer.W[o * K + k]!;
  const w = g.addInitializer("Wt", new InMemoryTensor(DataType.FLOAT, [K, N], new Uint8Array(Wt.buffer)));
  const b = g.addInitializer("b", new InMemoryTensor(DataType.FLOAT, [N], new Uint8Array(layer.bias32!.slice().buffer)));
  const mm = g.createValue("mm");
  g.addNode({ opType: "MatMul", inputs: [A, w], outputs: [mm], name: "mm" });
  const Y = g.createValue("Y", { elemType: DataType.FLOAT, shape: ["t", N] });
  g.addNode({ opType: "Add", inputs: [mm, b], outputs: [Y], name: "add" });
  g.outputs.push(Y);
  const m = new Model(g);
  m.irVersion = 10;
  m.opsetImports = [{ domain: "", version: 18 }];
  return encodeModel(m);
}

function mappedOrt(): Array<{ path: string; inode: string }> {
  const seen = new Map<string, { path: string; inode: string }>();
  for (const line of readFileSync("/proc/self/maps", "utf8").split("\n")) {
    const parts = line.trim().split(/\s+/);
    const path = parts[5];
    if (path && /libonnxruntime\.so/.test(path)) seen.set(`${parts[3]}:${parts[4]}`, { path, inode: parts[4]! });
  }
  return [...seen.values()];
}

async function main(): Promise<void> {
  let ort: typeof import("onnxruntime-node") | undefined;
  let native: typeof import("../../compiler/runtime/native-session.js") | undefined;
  if (order === "ort-first") {
    ort = await import("onnxruntime-node");
    await (await ort.InferenceSession.create(denseModel())).release(); // the runtime is loaded and used
    native = await import("../../compiler/runtime/native-session.js");
  } else {
    native = await import("../../compiler/runtime/native-session.js");
    await (await native.NativeSession.create(encodeModel(layerModel(layer, 1)))).release();
    ort = await import("onnxruntime-node");
  }
  const dense = await ort.InferenceSession.create(denseModel());
  const packed = await native.NativeSession.create(encodeModel(layerModel(layer, 1)), { intraOpNumThreads: 2 });
  const feeds = Array.from({ length: 16 }, () => new ort.Tensor("float32", Float32Array.from({ length: T * K }, () => rng.normal()), [T, K]));
  let maxDiff = 0, maxRef = 0;
  for (let round = 0; round < 3; round++) {
    const results = await Promise.all(feeds.flatMap((A) => [dense.run({ A }), packed.run({ A })]));
    for (let i = 0; i < results.length; i += 2) {
      const d = results[i]!.Y!.data as Float32Array, p = results[i + 1]!.Y!.data as Float32Array;
      for (let j = 0; j < d.length; j++) {
        maxDiff = Math.max(maxDiff, Math.abs(d[j]! - p[j]!));
        maxRef = Math.max(maxRef, Math.abs(d[j]!));
      }
    }
  }
  await dense.release();
  await packed.release();
  process.stdout.write(JSON.stringify({ order, mapped: mappedOrt(), nativeVersion: native.nativeRuntimeVersion(), ortNodeVersion: ort.env.versions.node, maxRelDiff: maxDiff / maxRef }) + "\n");
}

main().catch((e) => {
  process.stderr.write(`${(e as Error)?.stack ?? e}\n`);
  process.exitCode = 1;
});
