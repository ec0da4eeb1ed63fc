/**
 * Types of `?vnm` imports, for TypeScript projects using the bundler plugin:
 * `/// <reference types="vnmc/client" />` (or "types": ["vnmc/client"] in tsconfig.json).
 * The default export is the URL of the compiled model; put the query's options before `vnm`
 * (`./model.onnx?minSize=0&vnm`) or use `?vnm` alone for these patterns to match.
 */
interface VnmcModelModule {
  /** URL of the compiled model (its `.data` file, when it has one, is next to it). */
  readonly default: string;
  /** The V:N:M pattern it was compiled to ("per-layer" when chosen per layer). */
  readonly vnm: string;
  /** MatMul/Gemm nodes rewritten to V:N:M. */
  readonly rewritten: number;
  /** Its path in the bundle's output, e.g. "vnm/model-1a2b3c4d.vnm.onnx". */
  readonly fileName: string;
}
declare module "*?vnm" {
  const url: VnmcModelModule["default"];
  export default url;
  export const vnm: VnmcModelModule["vnm"];
  export const rewritten: VnmcModelModule["rewritten"];
  export const fileName: VnmcModelModule["fileName"];
}
declare module "*&vnm" {
  const url: VnmcModelModule["default"];
  export default url;
  export const vnm: VnmcModelModule["vnm"];
  export const rewritten: VnmcModelModule["rewritten"];
  export const fileName: VnmcModelModule["fileName"];
}
