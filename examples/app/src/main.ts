/// <reference types="vnmc/client" />
// The bundler path: the import compiles models/mlp.onnx at build time (Vite, Rollup, webpack or esbuild
// with vnmc's plugin) and gives the URL of the compiled model emitted next to the bundle.
import { fileURLToPath } from "node:url";
import { InferenceSession, Tensor } from "onnxruntime-node";
import modelUrl, { vnm } from "../models/mlp.onnx?vnm";

export { modelUrl, vnm };

/** Runs the compiled model once on a batch of 2 (onnxruntime-node, through the model's fallback function). */
export async function main(): Promise<{ vnm: string; dims: readonly number[] }> {
  const session = await InferenceSession.create(fileURLToPath(modelUrl));
  const input = new Tensor("float32", new Float32Array(2 * 64).fill(0.25), [2, 64]);
  const out = await session.run({ input });
  await session.release();
  return { vnm, dims: out.output!.dims };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!)) {
  main().then((r) => console.log(`compiled to ${r.vnm}: output [${r.dims.join(", ")}]`));
}
