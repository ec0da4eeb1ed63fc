#!/usr/bin/env python3
"""Runs one VNMSparseGemm case a few times (for ncu / compute-sanitizer on the GPU machine).

usage: profile_case.py --lib libvnmc_cuda.so N K V M T [windowed|permuted] [reps]
"""
import argparse
import sys

import numpy as np
import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from kernel_bench import Lib, make_packed  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="runtime-ops/build/cuda/libvnmc_cuda.so")
    ap.add_argument("N", type=int)
    ap.add_argument("K", type=int)
    ap.add_argument("V", type=int)
    ap.add_argument("M", type=int)
    ap.add_argument("T", type=int)
    ap.add_argument("kind", nargs="?", default="windowed")
    ap.add_argument("reps", nargs="?", type=int, default=3)
    a = ap.parse_args()
    lib = Lib(a.lib)
    values, cols, meta, _ = make_packed(a.N, a.K, a.V, a.M, a.kind, np.random.default_rng(1))
    h = lib.create(a.N, a.K, a.V, a.M, values, cols, meta)
    X = torch.randn(a.T, a.K, device="cuda", dtype=torch.float16)
    Y = torch.empty(a.T, a.N, device="cuda", dtype=torch.float16)
    wsb = lib.L.vnmc_cuda_workspace(h, a.T)
    ws = torch.empty(max(wsb, 16), device="cuda", dtype=torch.uint8)
    print(lib.describe(h, a.T), flush=True)
    for _ in range(a.reps):
        lib.run(h, X, a.T, Y, ws, wsb)
    torch.cuda.synchronize()
    lib.L.vnmc_cuda_destroy(h)


if __name__ == "__main__":
    main()
