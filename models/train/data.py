"""Data of the trained test models, with NumPy only (no PyTorch): the trainers and make_calib.py share it.

charlm: fortune-mod corpus (data/corpus.txt) -> fixed vocabulary, seeded split by fortune, windows.
digits: scikit-learn's digits.csv.gz -> pixels in [0, 1], seeded stratified split.
"""
import gzip
import random

import numpy as np

# Index 0 stands for any character outside the list (rare: a few non-ASCII, backspaces).
VOCAB = ["\x00", "\t", "\n"] + [chr(c) for c in range(32, 127)]


def encode(text):
    table = {c: i for i, c in enumerate(VOCAB)}
    return np.fromiter((table.get(c, 0) for c in text), dtype=np.int64, count=len(text))


def split_corpus(text, seed=1234, frac=0.05):
    recs = [r + "%\n" for r in text.split("%\n") if r.strip()]
    random.Random(seed).shuffle(recs)
    n = int(len(recs) * frac)
    return "".join(recs[2 * n:]), "".join(recs[:n]), "".join(recs[n:2 * n])  # train, val, test


def windows(ids, ctx, limit=None):
    """Non-overlapping windows of ctx+1 tokens."""
    n = len(ids) // (ctx + 1)
    if limit is not None:
        n = min(n, limit)
    return ids[: n * (ctx + 1)].reshape(n, ctx + 1)


def load_digits(path):
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return (data[:, :64] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), data[:, 64].astype(np.int64)


def stratified_split(y, test_frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.extend(idx[: int(round(test_frac * len(idx)))])
    test = np.sort(np.array(test))
    train = np.setdiff1d(np.arange(len(y)), test)
    return train, test
