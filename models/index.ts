/** Seeded builders of small test models of real transformer architectures, written with vnmc's IR. */
import type { Model } from "../compiler/ir/model.js";
import { BERT_DEFAULTS, type BertOptions, buildBertLayer } from "./bert.js";
import { buildLlamaBlock, LLAMA_DEFAULTS, type LlamaOptions } from "./llama.js";
import { buildMlp, MLP_DEFAULTS, type MlpOptions } from "./mlp.js";
import { buildVitBlock, VIT_DEFAULTS, type VitOptions, vitImageSize } from "./vit.js";

export { GraphBuilder, type Dtype, type Init, type BuilderOptions } from "./graph-builder.js";
export { Rng, linearWeight, deriveSeed, hashString, type LinearInitOptions } from "./random.js";
export { buildMlp, MLP_DEFAULTS, type MlpOptions };
export { buildBertLayer, BERT_DEFAULTS, type BertOptions };
export { buildVitBlock, VIT_DEFAULTS, type VitOptions, vitImageSize };
export { buildLlamaBlock, LLAMA_DEFAULTS, type LlamaOptions };

export interface ModelOptionsByKind {
  mlp: MlpOptions;
  bert: BertOptions;
  vit: VitOptions;
  llama: LlamaOptions;
}
export type ModelKind = keyof ModelOptionsByKind;

export interface RegistryEntry<O> {
  description: string;
  defaults: Readonly<O>;
  build: (opts?: Partial<O>) => Model;
}

export const registry: { [K in ModelKind]: RegistryEntry<ModelOptionsByKind[K]> } = {
  mlp: { description: "multi-layer perceptron, input [batch, inFeatures]", defaults: MLP_DEFAULTS, build: buildMlp },
  bert: { description: "BERT encoder layer, input [batch, seq, hidden]", defaults: BERT_DEFAULTS, build: buildBertLayer },
  vit: { description: "ViT with one pre-norm block, input [batch, channels, H, W]", defaults: VIT_DEFAULTS, build: buildVitBlock },
  llama: { description: "Llama decoder block with lm_head, input [batch, seq, hidden] or token ids", defaults: LLAMA_DEFAULTS, build: buildLlamaBlock },
};

export const MODEL_KINDS = Object.keys(registry) as ModelKind[];

export function isModelKind(s: string): s is ModelKind {
  return Object.hasOwn(registry, s);
}

/** Build a model of `kind` with `opts` over the kind's defaults. */
export function buildModel<K extends ModelKind>(kind: K, opts: Partial<ModelOptionsByKind[K]> = {}): Model {
  const entry = registry[kind] as RegistryEntry<ModelOptionsByKind[K]>;
  if (!entry) throw new Error(`unknown model kind '${kind}'`);
  return entry.build(opts);
}
