"""Train a small ViT on scikit-learn's digits (8x8 grey images, 10 classes), export it to ONNX.

    python3 models/train/digits_vit.py --out DIR

Reads models/train/data/digits.csv.gz (the file sklearn.datasets.load_digits reads, as shipped in
Debian's python3-sklearn; made by fetch_data.sh): 1797 rows of 64 pixels (0..16) and a label.
Stratified seeded split: 20 % test (360 images). Pixels are scaled to [0, 1].

Model: Conv2d patch embedding (2x2 patches -> 16 tokens) + class token + learned positions,
N pre-norm blocks [LayerNorm -> multi-head self-attention (qkv Linear, proj Linear) -> residual,
LayerNorm -> fc1 (2 d) -> GELU -> fc2 -> residual], LayerNorm, Linear head on the class token.

Writes to DIR: digits_vit.onnx (input `pixels` float32 [batch, 1, 8, 8], output `logits` float32
[batch, 10]), digits.eval.images.npy (float32 [360, 1, 8, 8]), digits.eval.labels.npy (int64 [360])
and digits_vit.metrics.json.
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
from data import load_digits, stratified_split

HERE = os.path.dirname(os.path.abspath(__file__))


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.d, self.heads, self.hd = d, heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        B, T = x.shape[0], x.shape[1]
        q, k, v = self.qkv(x).split(self.d, dim=2)
        q = q.reshape(B, T, self.heads, self.hd).transpose(1, 2)
        k = k.reshape(B, T, self.heads, self.hd).transpose(1, 2)
        v = v.reshape(B, T, self.heads, self.hd).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd)), dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, self.d)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, d, heads, dropout, mlp_ratio):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = Mlp(d, mlp_ratio * d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class DigitsVit(nn.Module):
    def __init__(self, d=64, depth=2, heads=4, patch=2, mlp_ratio=2, dropout=0.1, classes=10):
        super().__init__()
        n = (8 // patch) ** 2
        self.patch_embed = nn.Conv2d(1, d, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_emb = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, heads, dropout, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, pixels):
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_emb
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x[:, 0]))


def augment(x):
    """Random shift by up to one pixel (zero fill)."""
    B = x.shape[0]
    p = F.pad(x, (1, 1, 1, 1))
    dx = torch.randint(0, 3, (B,), device=x.device)
    dy = torch.randint(0, 3, (B,), device=x.device)
    rows = (dy[:, None] + torch.arange(8, device=x.device))[:, :, None].expand(B, 8, 8)
    cols = (dx[:, None] + torch.arange(8, device=x.device))[:, None, :].expand(B, 8, 8)
    return p[torch.arange(B, device=x.device)[:, None, None], 0, rows, cols][:, None]


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    return (model(x).argmax(-1) == y).float().mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=os.path.join(HERE, "data", "digits.csv.gz"))
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--mlp-ratio", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    seed_all(a.seed)
    dev = device()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    X, y = load_digits(a.data)
    tr, te = stratified_split(y)
    log(f"digits: {len(y)} images, train {len(tr)}, test {len(te)}")
    xtr, ytr = torch.from_numpy(X[tr]).to(dev), torch.from_numpy(y[tr]).to(dev)
    xte, yte = torch.from_numpy(X[te]).to(dev), torch.from_numpy(y[te]).to(dev)
    model = DigitsVit(a.d, a.depth, a.heads, a.patch, a.mlp_ratio).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model: d={a.d} depth={a.depth} heads={a.heads} patch={a.patch} mlp={a.mlp_ratio * a.d} params={nparams}")
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.05, **({"fused": True} if dev.type == "cuda" else {}))
    steps_per_epoch = math.ceil(len(tr) / a.batch)
    total = a.epochs * steps_per_epoch
    warmup = 10 * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    t0 = time.time()
    for ep in range(a.epochs):
        model.train()
        perm = torch.randperm(len(tr), device=dev)
        for i in range(0, len(tr), a.batch):
            idx = perm[i:i + a.batch]
            loss = F.cross_entropy(model(augment(xtr[idx])), ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (ep + 1) % 50 == 0:
            log(f"epoch {ep + 1}: loss {loss.item():.4f} train acc {accuracy(model, xtr, ytr):.4f} "
                f"test acc {accuracy(model, xte, yte):.4f} {time.time() - t0:.0f}s")
    train_s = time.time() - t0
    test_acc = accuracy(model, xte, yte)
    train_acc = accuracy(model, xtr, ytr)
    log(f"final: train acc {train_acc:.4f}, test acc {test_acc:.4f} ({len(te)} images)")

    np.save(os.path.join(a.out, "digits.eval.images.npy"), X[te])
    np.save(os.path.join(a.out, "digits.eval.labels.npy"), y[te])
    onnx_path = os.path.join(a.out, "digits_vit.onnx")
    summary = export_onnx(model, (torch.zeros(2, 1, 8, 8),), onnx_path, ["pixels"], ["logits"],
                          {"pixels": {0: "batch"}, "logits": {0: "batch"}})
    sess = ort_session(onnx_path)
    maxdiff = onnx_acc = None
    if sess is not None:
        got = sess.run(None, {"pixels": X[te]})[0]
        with torch.no_grad():
            ref = model.cpu().eval()(torch.from_numpy(X[te])).numpy()
        maxdiff = float(np.abs(ref - got).max())
        onnx_acc = float((got.argmax(-1) == y[te]).mean())
        log(f"onnx vs torch: max abs diff {maxdiff:.2e}; onnxruntime test acc {onnx_acc:.4f}")
    metrics = {
        "model": {"d": a.d, "depth": a.depth, "heads": a.heads, "patch": a.patch, "mlp_hidden": a.mlp_ratio * a.d,
                  "params": nparams},
        "train": {"epochs": a.epochs, "batch": a.batch, "lr": a.lr, "seconds": round(train_s, 1), "seed": a.seed,
                  "images": {"train": len(tr), "test": len(te)}},
        "train_acc": train_acc, "test_acc": test_acc, "onnx_test_acc": onnx_acc,
        "onnx": summary, "onnx_vs_torch_maxdiff": maxdiff, "env": env_info(),
    }
    with open(os.path.join(a.out, "digits_vit.metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)


if __name__ == "__main__":
    main()
