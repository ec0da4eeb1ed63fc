"""Sums ncu's per-kernel gpu__time_duration of one onnxruntime run (bench/gpu/e2e_gpu_time.sh) per model:
total GPU time, time in GEMM kernels (cuBLAS / cutlass for dense, vnmc's kernels for compiled) and the
rest; writes gpu_time.json and prints a table with compiled/dense ratios."""
import csv
import glob
import json
import os
import sys


def load(path):
    rows = list(csv.reader(open(path, errors="replace")))
    hdr = next((i for i, r in enumerate(rows) if "Kernel Name" in r and "gpu__time_duration.sum" in r), None)
    if hdr is None:
        return None
    h = rows[hdr]
    unit = rows[hdr + 1][h.index("gpu__time_duration.sum")]
    scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0, "ms": 1e3}.get(unit, 1.0)
    ks = []
    for r in rows[hdr + 2:]:
        if len(r) != len(h):
            continue
        try:
            ks.append((r[h.index("Kernel Name")], float(r[h.index("gpu__time_duration.sum")].replace(",", "")) * scale))
        except ValueError:
            pass
    return ks


def kind(name):
    n = name.lower()
    if "vnm" in n:
        return "vnmc"
    if any(k in n for k in ("gemm", "xmma", "cutlass", "sm90_", "sm80_", "ampere_", "cublas")):
        return "gemm"
    return "other"


def main(out):
    res = {}
    for f in sorted(glob.glob(os.path.join(out, "ncu_*.csv"))):
        ks = load(f)
        if not ks:
            print("no kernels in", f)
            continue
        tag = os.path.basename(f)[4:-4]
        case, model = tag.split("_", 1)
        t = {"total_us": 0.0, "gemm_us": 0.0, "vnmc_us": 0.0, "other_us": 0.0, "kernels": len(ks)}
        for n, d in ks:
            t["total_us"] += d
            t[kind(n) + "_us"] += d
        res.setdefault(case, {})[model] = t
    json.dump(res, open(os.path.join(out, "gpu_time.json"), "w"), indent=1)
    print(f"{'case':8} {'model':22} {'kernels':>7} {'GPU us':>9} {'GEMM us':>9} {'other us':>9} {'vs dense':>8} {'GEMM vs dense':>13}")
    for case, ms in res.items():
        d = next((v for k, v in ms.items() if k.endswith("dense")), None)
        for model, t in ms.items():
            g = t["gemm_us"] + t["vnmc_us"]
            r = f"{d['total_us'] / t['total_us']:.2f}x" if d else ""
            rg = f"{(d['gemm_us'] + d['vnmc_us']) / g:.2f}x" if d and g else ""
            print(f"{case:8} {model:22} {t['kernels']:7d} {t['total_us']:9.1f} {g:9.1f} {t['other_us']:9.1f} {r:>8} {rg:>13}")


if __name__ == "__main__":
    main(sys.argv[1])
