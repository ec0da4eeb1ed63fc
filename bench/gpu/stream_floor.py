#!/usr/bin/env python3
"""The streaming floor of the decode benchmark's harness: how long a plain read of B bytes takes on this GPU
when timed as kernel_bench.py times a decode case (CUDA-graph replay of a launch sequence over copies
rotated past L2). Two readers: torch.sum over fp16 (a tuned reduction), and cuBLAS gemv (F.linear with one
token) of a dense weight of the same bytes. Prints one line per size; the fixed cost and the streaming
rate come from a least-squares line through the sizes.

usage: stream_floor.py [--mb 5,10,15,26,41,90] [--reps 15]
"""
import argparse
import math

import torch
import torch.nn.functional as F

from kernel_bench import copies_for, graph_time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", default="4.9,9.7,15.4,26,41,90")
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    print(f"card: {torch.cuda.get_device_name(0)}")
    rows = []
    for mb in [float(x) for x in a.mb.split(",")]:
        n = int(mb * 1e6 / 2) // 4096 * 4096
        nbytes = n * 2
        copies = copies_for(nbytes, l2)
        bufs = [torch.randn(n, device="cuda", dtype=torch.float16) for _ in range(copies)]
        t_sum = graph_time([lambda b=b: torch.sum(b, dtype=torch.float32) for b in bufs], a.reps)
        x = torch.randn(1, 4096, device="cuda", dtype=torch.float16)
        t_gemv = graph_time([lambda b=b: F.linear(x, b.view(-1, 4096)) for b in bufs], a.reps)
        rows.append((nbytes, t_sum, t_gemv))
        print(f"{nbytes / 1e6:6.1f} MB: sum {t_sum * 1e3:6.2f} us ({nbytes / t_sum / 1e9:.2f} TB/s), "
              f"gemv {t_gemv * 1e3:6.2f} us ({nbytes / t_gemv / 1e9:.2f} TB/s)", flush=True)
        del bufs
    for name, j in (("sum", 1), ("gemv", 2)):
        xs = [r[0] / 1e6 for r in rows]
        ys = [r[j] * 1e3 for r in rows]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        print(f"{name}: fixed {my - slope * mx:.2f} us + bytes at {1 / slope:.2f} TB/s (least squares)")


if __name__ == "__main__":
    main()
