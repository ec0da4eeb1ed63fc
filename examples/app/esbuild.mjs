import * as esbuild from "esbuild";
import vnmc from "vnmc/plugin";

await esbuild.build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  platform: "node",
  outdir: "dist/esbuild",
  external: ["onnxruntime-node"],
  logLevel: "warning",
  plugins: [vnmc.esbuild({ defaults: { vnm: "16:2:8", minSize: 0, calib: "random:8" }, budget: { minCosine: 0.75 } })],
});
