import { intAttr } from "../compiler/ir/attribute.js";
import { DataType } from "../compiler/ir/dtype.js";
import type { Model } from "../compiler/ir/model.js";
import type { Value } from "../compiler/ir/value.js";
import { type Dtype, GraphBuilder, INT64_MAX } from "./graph-builder.js";

export interface LlamaOptions {
  hidden: number;
  heads: number;
  /** Key/value heads (grouped-query attention when fewer than `heads`); 0 means `heads`. */
  kvHeads: number;
  intermediate: number;
  vocab: number;
  /** Longest sequence the rotary and causal-mask tables cover; `seq` is symbolic up to this. */
  maxSeq: number;
  layers: number;
  /** Take token ids int64 [batch, seq] and Gather from `embed_tokens.weight` instead of hidden states. */
  embedInputs: boolean;
  /** Rotary base. */
  ropeTheta: number;
  dtype: Dtype;
  seed: number;
}

export const LLAMA_DEFAULTS: LlamaOptions = {
  hidden: 256, heads: 4, kvHeads: 0, intermediate: 704, vocab: 512, maxSeq: 128, layers: 1, embedInputs: false,
  ropeTheta: 10000, dtype: "fp32", seed: 0,
};

/**
 * Llama decoder block(s) named like the Hugging Face export: RMSNorm (`layers.<i>.input_layernorm`), Q/K/V
 * projections without bias (`layers.<i>.attn.{q,k,v}_proj`), rotary embedding on Q and K, causal attention,
 * `layers.<i>.attn.o_proj`, residual, RMSNorm (`post_attention_layernorm`), SwiGLU MLP
 * (`layers.<i>.mlp.{gate,up,down}_proj`), residual; final `norm` and `lm_head` → logits [batch, seq, vocab].
 */
export function buildLlamaBlock(opts: Partial<LlamaOptions> = {}): Model {
  const o = { ...LLAMA_DEFAULTS, ...opts };
  const kvHeads = o.kvHeads || o.heads;
  if (o.hidden % o.heads !== 0) throw new Error(`hidden ${o.hidden} is not a multiple of heads ${o.heads}`);
  if (o.heads % kvHeads !== 0) throw new Error(`heads ${o.heads} is not a multiple of kvHeads ${kvHeads}`);
  const hd = o.hidden / o.heads;
  if (hd % 2 !== 0) throw new Error(`head dimension ${hd} is odd; rotary embedding needs an even one`);
  const b = new GraphBuilder("llama", o);

  let x: Value;
  if (o.embedInputs) {
    const ids = b.input("input_ids", ["batch", "seq"], DataType.INT64);
    const table = b.weight("embed_tokens.weight", [o.vocab, o.hidden], { kind: "normal", std: 0.02 });
    x = b.op("Gather", [table, ids], { name: "embed_tokens", attrs: [intAttr("axis", 0)] });
  } else {
    x = b.input("hidden_states", ["batch", "seq", o.hidden]);
  }

  // Tables shared by all layers, sliced to the runtime sequence length.
  const { cos, sin, mask } = b.scope("rotary_emb", () => {
    const half = hd / 2;
    const cosT = new Float32Array(o.maxSeq * hd);
    const sinT = new Float32Array(o.maxSeq * hd);
    for (let pos = 0; pos < o.maxSeq; pos++) {
      for (let i = 0; i < half; i++) {
        const angle = pos / Math.pow(o.ropeTheta, (2 * i) / hd);
        for (const j of [i, i + half]) {
          cosT[pos * hd + j] = Math.cos(angle);
          sinT[pos * hd + j] = Math.sin(angle);
        }
      }
    }
    const cosCached = b.weight("rotary_emb.cos_cached", [o.maxSeq, hd], { kind: "data", data: cosT });
    const sinCached = b.weight("rotary_emb.sin_cached", [o.maxSeq, hd], { kind: "data", data: sinT });
    const allowed = new Uint8Array(o.maxSeq * o.maxSeq);
    for (let i = 0; i < o.maxSeq; i++) for (let j = 0; j <= i; j++) allowed[i * o.maxSeq + j] = 1;
    const maskCached = b.boolTensor("causal_mask", [o.maxSeq, o.maxSeq], allowed);

    const seqLen = b.shape(x, 1, 2);
    const zero = b.i64([0]);
    return {
      cos: b.slice(cosCached, zero, seqLen, zero),
      sin: b.slice(sinCached, zero, seqLen, zero),
      mask: b.slice(maskCached, b.i64([0, 0]), b.concat([seqLen, seqLen], 0), b.i64([0, 1])),
    };
  });
  const minValue = b.scalar(o.dtype === "fp16" ? -65504 : -3.4028234663852886e38);

  const rotateHalf = (t: Value): Value => {
    const x1 = b.slice(t, b.i64([0]), b.i64([hd / 2]), b.i64([-1]));
    const x2 = b.slice(t, b.i64([hd / 2]), b.i64([INT64_MAX]), b.i64([-1]));
    return b.concat([b.op("Neg", [x2]), x1], -1);
  };
  const rope = (t: Value): Value => b.add(b.mul(t, cos), b.mul(rotateHalf(t), sin));
  const repeatKv = (t: Value): Value => {
    if (kvHeads === o.heads) return t;
    // [B, kvH, S, hd] → [B, kvH, 1, S, hd] → expand [B, kvH, rep, S, hd] → [B, heads, S, hd]
    const u = b.op("Unsqueeze", [t, b.i64([2])]);
    const e = b.op("Expand", [u, b.i64([1, 1, o.heads / kvHeads, 1, 1])]);
    return b.reshape(e, [0, o.heads, -1, hd]);
  };

  for (let i = 0; i < o.layers; i++) {
    const p = `layers.${i}`;
    x = b.scope(`${p}.attn`, () => {
      const h = b.rmsNorm(x, o.hidden, `${p}.input_layernorm`);
      const q = rope(b.splitHeads(b.linear(h, o.hidden, o.hidden, `${p}.attn.q_proj`, { bias: false }), o.heads, hd));
      const k = rope(b.splitHeads(b.linear(h, o.hidden, kvHeads * hd, `${p}.attn.k_proj`, { bias: false }), kvHeads, hd));
      const v = b.splitHeads(b.linear(h, o.hidden, kvHeads * hd, `${p}.attn.v_proj`, { bias: false }), kvHeads, hd);
      const ctx = b.attention(q, repeatKv(k), repeatKv(v), hd, {
        mask: (scores) => b.op("Where", [mask, scores, minValue]),
        softmaxFp32: true,
      });
      const out = b.linear(b.mergeHeads(ctx, o.heads, hd), o.hidden, o.hidden, `${p}.attn.o_proj`, { bias: false });
      return b.add(x, out);
    });
    x = b.scope(`${p}.mlp`, () => {
      const h = b.rmsNorm(x, o.hidden, `${p}.post_attention_layernorm`);
      const gate = b.linear(h, o.hidden, o.intermediate, `${p}.mlp.gate_proj`, { bias: false });
      const up = b.linear(h, o.hidden, o.intermediate, `${p}.mlp.up_proj`, { bias: false });
      const down = b.linear(b.mul(b.silu(gate), up), o.intermediate, o.hidden, `${p}.mlp.down_proj`, { bias: false });
      return b.add(x, down);
    });
  }

  const logits = b.scope("lm_head", () =>
    b.linear(b.rmsNorm(x, o.hidden, "norm"), o.hidden, o.vocab, "lm_head", { bias: false, out: "logits" }));
  b.output(logits, ["batch", "seq", o.vocab]);
  return b.model();
}
