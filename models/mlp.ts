import type { Model } from "../compiler/ir/model.js";
import { type Dtype, GraphBuilder } from "./graph-builder.js";

export interface MlpOptions {
  inFeatures: number;
  hidden: number;
  outFeatures: number;
  /** Number of Linear layers (ReLU between them): in→hidden, hidden→hidden…, hidden→out. */
  layers: number;
  dtype: Dtype;
  seed: number;
  /** Write each Linear as Gemm(transB=1) with bias C instead of MatMul + Add. */
  useGemm: boolean;
}

export const MLP_DEFAULTS: MlpOptions = {
  inFeatures: 256, hidden: 1024, outFeatures: 256, layers: 2, dtype: "fp32", seed: 0, useGemm: false,
};

/** input [batch, inFeatures] → Linear → Relu → … → Linear → output [batch, outFeatures]. Nodes `layers.<i>`. */
export function buildMlp(opts: Partial<MlpOptions> = {}): Model {
  const o = { ...MLP_DEFAULTS, ...opts };
  if (o.layers < 1) throw new Error("an MLP needs at least one layer");
  const b = new GraphBuilder("mlp", o);
  let x = b.input("input", ["batch", o.inFeatures]);
  for (let i = 0; i < o.layers; i++) {
    const inF = i === 0 ? o.inFeatures : o.hidden;
    const outF = i === o.layers - 1 ? o.outFeatures : o.hidden;
    const name = `layers.${i}`;
    const out = i === o.layers - 1 ? "output" : undefined;
    x = b.scope(name, () => (o.useGemm ? b.gemm(x, inF, outF, name, { out }) : b.linear(x, inF, outF, name, { out })));
    if (i < o.layers - 1) x = b.scope(name, () => b.relu(x));
  }
  b.output(x, ["batch", o.outFeatures]);
  return b.model();
}
