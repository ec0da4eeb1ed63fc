import type { Model } from "../compiler/ir/model.js";
import { type Dtype, GraphBuilder } from "./graph-builder.js";

export interface BertOptions {
  hidden: number;
  heads: number;
  ffn: number;
  /** Number of encoder layers (default 1). */
  layers: number;
  dtype: Dtype;
  seed: number;
}

export const BERT_DEFAULTS: BertOptions = { hidden: 256, heads: 4, ffn: 1024, layers: 1, dtype: "fp32", seed: 0 };

/**
 * BERT encoder layer(s), post-norm, named as Hugging Face's BertLayer exports:
 * hidden_states [batch, seq, hidden] → last_hidden_state [batch, seq, hidden].
 */
export function buildBertLayer(opts: Partial<BertOptions> = {}): Model {
  const o = { ...BERT_DEFAULTS, ...opts };
  if (o.hidden % o.heads !== 0) throw new Error(`hidden ${o.hidden} is not a multiple of heads ${o.heads}`);
  const hd = o.hidden / o.heads;
  const b = new GraphBuilder("bert", o);
  let x = b.input("hidden_states", ["batch", "seq", o.hidden]);
  for (let i = 0; i < o.layers; i++) {
    const p = `encoder.layer.${i}`;
    const last = i === o.layers - 1;
    x = b.scope(`${p}.attention`, () => {
      const a = `${p}.attention`;
      const q = b.splitHeads(b.linear(x, o.hidden, o.hidden, `${a}.self.query`), o.heads, hd);
      const k = b.splitHeads(b.linear(x, o.hidden, o.hidden, `${a}.self.key`), o.heads, hd);
      const v = b.splitHeads(b.linear(x, o.hidden, o.hidden, `${a}.self.value`), o.heads, hd);
      const ctx = b.scope(`${a}.self`, () => b.mergeHeads(b.attention(q, k, v, hd), o.heads, hd));
      const proj = b.linear(ctx, o.hidden, o.hidden, `${a}.output.dense`);
      return b.layerNorm(b.add(proj, x), o.hidden, `${a}.output.LayerNorm`, { eps: 1e-12 });
    });
    x = b.scope(`${p}.output`, () => {
      const h = b.scope(`${p}.intermediate`, () => b.gelu(b.linear(x, o.hidden, o.ffn, `${p}.intermediate.dense`)));
      const y = b.linear(h, o.ffn, o.hidden, `${p}.output.dense`);
      return b.layerNorm(b.add(y, x), o.hidden, `${p}.output.LayerNorm`, { eps: 1e-12, out: last ? "last_hidden_state" : undefined });
    });
  }
  b.output(x, ["batch", "seq", o.hidden]);
  return b.model();
}
