import { defineConfig } from "vite";
import vnmc from "vnmc/plugin";

export default defineConfig({
  plugins: [vnmc.vite({ defaults: { vnm: "16:2:8", minSize: 0, calib: "random:8" }, budget: { minCosine: 0.75 } })],
  logLevel: "warn",
  // Asset URLs relative to the bundle (new URL("vnm/…", import.meta.url)), as a Node program needs; a web app keeps base "/".
  base: "./",
  build: {
    outDir: "dist/vite",
    emptyOutDir: true,
    lib: { entry: "src/main.ts", formats: ["es"], fileName: "main" },
    rollupOptions: { external: [/^node:/, "onnxruntime-node"] },
  },
});
