#!/usr/bin/env python3
"""Side-by-side table of kernel_bench.py runs of one experiment: OUT/PREFIX<mode>.json for each mode.

usage: compare_runs.py OUT PREFIX MODE [MODE ...]   (e.g. compare_runs.py /tmp/out kb_cfg 1 0)
"""
import json
import sys


def main():
    out, prefix, modes = sys.argv[1], sys.argv[2], sys.argv[3:]
    runs = {m: {(x["shape"], x["T"], x["config"], x["indices"]): x for x in json.load(open(f"{out}/{prefix}{m}.json"))}
            for m in modes}
    print("shape T config kind | " + " | ".join(f"{prefix}{m} us (x cuBLAS, cuBLAS us) path" for m in modes))
    def cell(x):
        if not x:
            return "-"
        cs = f", cuSPARSELt {x['cusparselt_ms'] * 1e3:.1f}" if x.get("cusparselt_ms") else ""
        return f"{x['ours_ms'] * 1e3:.1f} ({x['cublas_ms'] / x['ours_ms']:.2f}x, {x['cublas_ms'] * 1e3:.1f}{cs}) {x['path']}"
    for k in runs[modes[0]]:
        print(*k, "|", " | ".join(cell(runs[m].get(k)) for m in modes))


if __name__ == "__main__":
    main()
