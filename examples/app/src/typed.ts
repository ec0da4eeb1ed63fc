// The `vnmc build` path: vnmc.config.json compiles models/mlp.onnx to dist/models/mlp.vnm.onnx (checked
// against its budget) and writes src/generated/mlp.model.ts, a typed module for it.
import { Tensor } from "onnxruntime-node";
import { createSession, inputShapes } from "./generated/mlp.model.js";

export async function runTyped(batch: number): Promise<Float32Array> {
  const shape = inputShapes({ batch }).input; // [batch, 64]
  const session = await createSession(); // vnmc's kernels when built, else onnxruntime-node
  const out = await session.run({ input: new Tensor("float32", new Float32Array(batch * 64).fill(0.25), shape) });
  await session.release();
  return out.output.data; // typed: Float32Array
}
