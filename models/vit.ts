import { intAttr } from "../compiler/ir/attribute.js";
import type { Model } from "../compiler/ir/model.js";
import { type Dtype, GraphBuilder } from "./graph-builder.js";

export interface VitOptions {
  hidden: number;
  heads: number;
  mlp: number;
  /** Number of patches; must be a perfect square (the image is sqrt(patches) patches a side). */
  patches: number;
  patchSize: number;
  channels: number;
  classes: number;
  /** Number of transformer blocks (default 1). */
  depth: number;
  dtype: Dtype;
  seed: number;
}

export const VIT_DEFAULTS: VitOptions = {
  hidden: 192, heads: 3, mlp: 768, patches: 16, patchSize: 4, channels: 3, classes: 10, depth: 1, dtype: "fp32", seed: 0,
};

/** Image side in pixels for these options. */
export function vitImageSize(o: Pick<VitOptions, "patches" | "patchSize">): number {
  return Math.round(Math.sqrt(o.patches)) * o.patchSize;
}

/**
 * A ViT named as timm exports it: pixel_values [batch, channels, H, W] → patch embedding (Reshape/
 * Transpose + MatMul `patch_embed.proj`), class token, position embedding, pre-norm blocks
 * (`blocks.<i>.attn.{q,k,v}_proj`, `blocks.<i>.attn.proj`, `blocks.<i>.mlp.fc1/fc2`), final `norm`,
 * classifier `head` on the class token → logits [batch, classes].
 */
export function buildVitBlock(opts: Partial<VitOptions> = {}): Model {
  const o = { ...VIT_DEFAULTS, ...opts };
  const g = Math.round(Math.sqrt(o.patches));
  if (g * g !== o.patches) throw new Error(`patches ${o.patches} is not a perfect square`);
  if (o.hidden % o.heads !== 0) throw new Error(`hidden ${o.hidden} is not a multiple of heads ${o.heads}`);
  const hd = o.hidden / o.heads;
  const p = o.patchSize;
  const patchDim = o.channels * p * p;
  const side = g * p;
  const b = new GraphBuilder("vit", o);
  const image = b.input("pixel_values", ["batch", o.channels, side, side]);

  let x = b.scope("patch_embed", () => {
    // [B, C, g·p, g·p] → [B, C, g, p, g, p] → [B, g, g, C, p, p] → [B, patches, C·p·p]: a strided conv as MatMul.
    const blocks = b.transpose(b.reshape(image, [0, o.channels, g, p, g, p]), [0, 2, 4, 1, 3, 5]);
    const flat = b.reshape(blocks, [0, o.patches, patchDim]);
    return b.linear(flat, patchDim, o.hidden, "patch_embed.proj");
  });

  x = b.scope("embeddings", () => {
    const cls = b.weight("cls_token", [1, 1, o.hidden], { kind: "normal", std: 0.02 });
    const expandTo = b.concat([b.shape(x, 0, 1), b.i64([1, o.hidden])], 0);
    const tokens = b.concat([b.op("Expand", [cls, expandTo]), x], 1);
    const pos = b.weight("pos_embed", [1, o.patches + 1, o.hidden], { kind: "normal", std: 0.02 });
    return b.add(tokens, pos);
  });

  for (let i = 0; i < o.depth; i++) {
    const n = `blocks.${i}`;
    x = b.scope(`${n}.attn`, () => {
      const h = b.layerNorm(x, o.hidden, `${n}.norm1`, { eps: 1e-6 });
      const q = b.splitHeads(b.linear(h, o.hidden, o.hidden, `${n}.attn.q_proj`), o.heads, hd);
      const k = b.splitHeads(b.linear(h, o.hidden, o.hidden, `${n}.attn.k_proj`), o.heads, hd);
      const v = b.splitHeads(b.linear(h, o.hidden, o.hidden, `${n}.attn.v_proj`), o.heads, hd);
      const ctx = b.mergeHeads(b.attention(q, k, v, hd), o.heads, hd);
      return b.add(x, b.linear(ctx, o.hidden, o.hidden, `${n}.attn.proj`));
    });
    x = b.scope(`${n}.mlp`, () => {
      const h = b.layerNorm(x, o.hidden, `${n}.norm2`, { eps: 1e-6 });
      const m = b.gelu(b.linear(h, o.hidden, o.mlp, `${n}.mlp.fc1`));
      return b.add(x, b.linear(m, o.mlp, o.hidden, `${n}.mlp.fc2`));
    });
  }

  const logits = b.scope("head", () => {
    const normed = b.layerNorm(x, o.hidden, "norm", { eps: 1e-6 });
    const clsOut = b.op("Gather", [normed, b.i64([0], [])], { attrs: [intAttr("axis", 1)] });
    return b.linear(clsOut, o.hidden, o.classes, "head", { out: "logits" });
  });
  b.output(logits, ["batch", o.classes]);
  return b.model();
}
