"""Train a character-level GPT-style decoder on the fortune-mod corpus, export it to ONNX.

    python3 models/train/charlm.py --out DIR [--time-limit 240]

Reads models/train/data/corpus.txt (made by fetch_data.sh). Splits the fortunes (records ending in a
`%` line) with a seeded shuffle into train/val/test = 90/5/5 %. The model is a pre-norm decoder:
token + learned position embeddings, N x [LayerNorm -> causal multi-head self-attention (one qkv
Linear, one proj Linear) -> residual, LayerNorm -> Linear(fc1) -> GELU -> Linear(fc2) -> residual],
final LayerNorm, Linear lm_head. Training keeps the checkpoint of lowest validation loss.

Writes to DIR: charlm.onnx (input `tokens` int64 [batch, seq <= ctx], output `logits` float32
[batch, seq, vocab]), charlm.eval.npy (uint8 [N, ctx+1] token ids of test windows: feed [:, :ctx], targets
[:, 1:]), charlm.vocab.json and charlm.metrics.json.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import Mlp, device, env_info, export_onnx, log, ort_session, seed_all
from data import VOCAB, encode, split_corpus, windows

HERE = os.path.dirname(os.path.abspath(__file__))
class Attention(nn.Module):
    def __init__(self, d, heads, ctx, dropout):
        super().__init__()
        self.d, self.heads, self.hd = d, heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.dropout = dropout
        self.register_buffer("causal", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)).view(1, 1, ctx, ctx),
                             persistent=False)

    def forward(self, x):
        B, T = x.shape[0], x.shape[1]
        q, k, v = self.qkv(x).split(self.d, dim=2)
        q = q.reshape(B, T, self.heads, self.hd).transpose(1, 2)
        k = k.reshape(B, T, self.heads, self.hd).transpose(1, 2)
        v = v.reshape(B, T, self.heads, self.hd).transpose(1, 2)
        if self.training and hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout)
        else:  # plain ops: the exported graph
            att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
            att = att.masked_fill(~self.causal[:, :, :T, :T], float("-inf"))
            y = torch.matmul(torch.softmax(att, dim=-1), v)
        y = y.transpose(1, 2).reshape(B, T, self.d)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, d, heads, ctx, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, ctx, dropout)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = Mlp(d, 4 * d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class CharGpt(nn.Module):
    def __init__(self, vocab, d=192, layers=4, heads=6, ctx=128, dropout=0.1):
        super().__init__()
        self.ctx = ctx
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Parameter(torch.zeros(ctx, d))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d, heads, ctx, dropout) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab)
        self.apply(self._init)
        nn.init.normal_(self.pos_emb, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("fc2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.drop(self.tok_emb(tokens) + self.pos_emb[:T])
        for b in self.blocks:
            x = b(x)
        return self.lm_head(self.ln_f(x))


@torch.no_grad()
def mean_nll(model, wins, dev, batch=256, amp=False):
    model.eval()
    tot, cnt = 0.0, 0
    for i in range(0, len(wins), batch):
        w = wins[i:i + batch].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum")
        tot += loss.item()
        cnt += w[:, 1:].numel()
    return tot / cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus.txt"))
    ap.add_argument("--d", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-steps", type=int, default=8000)
    ap.add_argument("--time-limit", type=float, default=240.0, help="seconds of training at most")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--export-windows", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-limit", type=int, default=None, help="val/test windows at most (for quick dry runs)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    seed_all(a.seed)
    dev = device()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    text = open(a.corpus, encoding="utf-8").read()
    tr, va, te = split_corpus(text)
    tr_ids, va_ids, te_ids = encode(tr), encode(va), encode(te)
    unk = int((tr_ids == 0).sum())
    log(f"corpus {len(text)} chars: train {len(tr_ids)}, val {len(va_ids)}, test {len(te_ids)}; vocab {len(VOCAB)}; unk in train {unk}")
    train_t = torch.from_numpy(tr_ids).to(dev)
    va_w = torch.from_numpy(windows(va_ids, a.ctx, a.eval_limit))
    te_w = torch.from_numpy(windows(te_ids, a.ctx, a.eval_limit))

    model = CharGpt(len(VOCAB), a.d, a.layers, a.heads, a.ctx, a.dropout).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model: d={a.d} layers={a.layers} heads={a.heads} ctx={a.ctx} params={nparams}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.99), **({"fused": True} if dev.type == "cuda" else {}))
    offs = torch.arange(a.ctx + 1, device=dev)
    warmup = 200
    total = a.max_steps
    best = (float("inf"), None, 0)
    t0 = time.time()
    step = 0
    while step < total:
        if step == 100:  # fit the cosine schedule into the time limit
            if dev.type == "cuda":
                torch.cuda.synchronize()
            per = (time.time() - t_mark) / 80
            total = min(a.max_steps, int(a.time_limit / per))
            log(f"{per * 1000:.1f} ms/step -> {total} steps")
        if step == 20:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_mark = time.time()
        lr = a.lr * min(1.0, (step + 1) / warmup)
        if step >= warmup:
            lr = 0.1 * a.lr + 0.9 * a.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        ix = torch.randint(0, len(train_t) - a.ctx - 1, (a.batch,), device=dev)
        w = train_t[ix[:, None] + offs]
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % a.eval_every == 0 or step == total:
            v = mean_nll(model, va_w, dev, amp=True)
            if v < best[0]:
                best = (v, {k: t.detach().clone() for k, t in model.state_dict().items()}, step)
            log(f"step {step}/{total} lr {lr:.2e} train {loss.item():.4f} val {v:.4f} (ppl {math.exp(v):.3f}) "
                f"best@{best[2]} {time.time() - t0:.0f}s")
    train_s = time.time() - t0
    model.load_state_dict(best[1])
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    val_nll = mean_nll(model, va_w, dev)
    test_nll = mean_nll(model, te_w, dev)
    log(f"best step {best[2]}: val ppl {math.exp(val_nll):.4f}, test ppl {math.exp(test_nll):.4f} "
        f"({te_w[:, 1:].numel()} chars), fp32")

    ev = te_w[: a.export_windows].numpy().astype(np.int64)
    assert len(VOCAB) <= 256
    np.save(os.path.join(a.out, "charlm.eval.npy"), ev.astype(np.uint8))  # vocab < 256: 1 byte a token
    with open(os.path.join(a.out, "charlm.vocab.json"), "w") as f:
        json.dump({"vocab": VOCAB, "unknown_index": 0, "ctx": a.ctx}, f)
    onnx_path = os.path.join(a.out, "charlm.onnx")
    summary = export_onnx(model, (torch.zeros(2, 64, dtype=torch.int64),), onnx_path, ["tokens"], ["logits"],
                          {"tokens": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})

    # Check the ONNX model against PyTorch and measure it on the exported windows (and prefixes).
    sess = ort_session(onnx_path)
    maxdiff, by_prefix = None, {}
    if sess is not None:
        model.cpu().eval()
        probe = torch.from_numpy(ev[:3, :77])
        with torch.no_grad():
            ref = model(probe).numpy()
        got = sess.run(None, {"tokens": probe.numpy()})[0]
        maxdiff = float(np.abs(ref - got).max())
        log(f"onnx vs torch (batch 3, seq 77): max abs diff {maxdiff:.2e}")
        nll_sum, cnt = 0.0, 0
        for i in range(0, len(ev), 16):
            w = ev[i:i + 16]
            lg = sess.run(None, {"tokens": w[:, :-1]})[0].astype(np.float64)
            lg -= lg.max(-1, keepdims=True)
            lp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
            tgt = w[:, 1:]
            nll_sum -= np.take_along_axis(lp, tgt[..., None], -1).sum()
            cnt += tgt.size
            n = i + len(w)
            if n in (16, 32, 64, 96, 128, 256) or n == len(ev):
                by_prefix[n] = math.exp(nll_sum / cnt)
        log("onnxruntime ppl on the first N exported windows:", json.dumps(by_prefix))
    metrics = {
        "model": {"d": a.d, "layers": a.layers, "heads": a.heads, "ctx": a.ctx, "vocab": len(VOCAB),
                  "mlp_hidden": 4 * a.d, "params": nparams, "dropout": a.dropout},
        "train": {"steps": step, "best_step": best[2], "batch": a.batch, "lr": a.lr, "seconds": round(train_s, 1),
                  "seed": a.seed, "chars": {"train": len(tr_ids), "val": len(va_ids), "test": len(te_ids)}},
        "val_ppl": math.exp(val_nll), "test_ppl": math.exp(test_nll), "test_chars": int(te_w[:, 1:].numel()),
        "onnx": summary, "onnx_vs_torch_maxdiff": maxdiff, "onnx_ppl_by_windows": by_prefix,
        "env": env_info(),
    }
    with open(os.path.join(a.out, "charlm.metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)


if __name__ == "__main__":
    main()
