#!/usr/bin/env python3
"""Kernel benchmark: vnmc's CUDA VNMSparseGemm vs cuBLAS dense (torch F.linear) vs cuSPARSELt 2:4.

One run times, for every shape and token count, the same activations through
  * ours: libvnmc_cuda.so (runtime-ops/cuda, ctypes), per V:N:M config and index kind,
  * cuBLAS: F.linear(X, W) with a dense fp16 W of the same shape,
  * cuSPARSELt 0.8 (the library inside PyTorch) on a 2:4-pruned W through its C API
    (bench/gpu/cslt_helper.cc): descriptors, algorithm selection and plan built once per (shape, T),
    config ids 0..5 swept and the best kept; T < 16 padded to 16 (cuSPARSELt rejects smaller T),
each as CUDA-graph replay of a sequence of launches over rotating weight copies (at least ~3x L2 of
weights per sequence, so no weight stays in L2), timed with CUDA events; the median of the replays,
divided by the launches per replay. Writes one JSON record per case.

usage: kernel_bench.py --lib runtime-ops/build/cuda/libvnmc_cuda.so --cslt libcslt_helper.so
                       [--out results.json] [--quick]
"""
import argparse
import faulthandler
import ctypes
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = [  # (name, N_out, K)
    ("llama2-7b q/k/v/o", 4096, 4096),
    ("llama2-7b up/gate", 11008, 4096),
    ("llama2-7b down", 4096, 11008),
    ("vit-base fc1", 3072, 768),
    ("vit-base fc2", 768, 3072),
    ("vit-base qkv/proj", 768, 768),
]
TOKENS = [1, 16, 64, 256, 2048, 8192]
CONFIGS = [(64, 5), (64, 8)]  # (V, M), N = 2
KINDS = ["windowed", "permuted"]
CODES = np.array([0x4, 0x8, 0xC, 0x9, 0xD, 0xE], dtype=np.uint8)


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------------
# packed V:N:M weights (canonical format of shared/design/vnm-format.md)
def make_packed(N, K, V, M, kind, rng, bf16=False):
    B = -(-N // V)
    R = B * V
    G = -(-K // M)
    values = rng.standard_normal((R, 2 * G), dtype=np.float32) * 0.05
    values = (torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16) if bf16
              else values.astype(np.float16))
    # 4 distinct offsets in each group window, increasing; the last, partial window is clipped.
    offs = np.sort(np.argsort(rng.random((B, G, M), dtype=np.float32), axis=2)[:, :, :4], axis=2).astype(np.int64)
    base = (np.arange(G, dtype=np.int64) * M)[None, :, None]
    cols = np.minimum(base + offs, K - 1)
    if kind == "permuted":  # each block its own input permutation
        cols = np.stack([rng.permutation(K)[cols[b]] for b in range(B)])
    if kind == "globalperm":  # one input permutation for all blocks (vnmc compile --permute)
        cols = rng.permutation(K)[cols]
    codes = CODES[rng.integers(0, 6, size=(R, G))]
    if G % 2:
        codes = np.concatenate([codes, np.zeros((R, 1), np.uint8)], axis=1)
    meta = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return values, cols.astype(np.int32), np.ascontiguousarray(meta), (B, R, G)


def dense_from_packed(values, cols, meta, N, K, V, M, bf16=False):
    """Dense fp32 W [N, K] on the GPU (row_index absent), for the correctness spot check."""
    R, G2 = values.shape
    G = G2 // 2
    g = torch.arange(G, device="cuda")
    mt = torch.from_numpy(meta).cuda().long()
    byte = mt[:, g // 2]
    code = torch.where((g % 2 == 1)[None, :], byte >> 4, byte & 15)
    p0, p1 = code & 3, (code >> 2) & 3
    c = torch.from_numpy(cols).cuda().long()[torch.arange(R, device="cuda") // V]  # [R, G, 4]
    c0 = torch.gather(c, 2, p0[:, :, None])[:, :, 0]
    c1 = torch.gather(c, 2, p1[:, :, None])[:, :, 0]
    v = torch.from_numpy(values.view(np.uint16).astype(np.int16)).cuda().view(torch.bfloat16 if bf16 else torch.float16).float()
    W = torch.zeros(R, K, device="cuda")
    rows = torch.arange(R, device="cuda")[:, None].expand(R, G)
    W.index_put_((rows.reshape(-1), c0.reshape(-1)), v[:, 0::2].reshape(-1), accumulate=True)
    W.index_put_((rows.reshape(-1), c1.reshape(-1)), v[:, 1::2].reshape(-1), accumulate=True)
    return W[:N]


# ---------------------------------------------------------------------------------------------------
class Lib:
    def __init__(self, path):
        L = ctypes.CDLL(path)
        vp, i64, sz = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t
        L.vnmc_cuda_create.restype = vp
        L.vnmc_cuda_create.argtypes = [i64, i64, i64, i64, ctypes.c_int, vp, vp, vp, vp, vp, ctypes.c_int,
                                       ctypes.c_char_p, ctypes.c_int]
        L.vnmc_cuda_clone.restype = vp
        L.vnmc_cuda_clone.argtypes = [vp, ctypes.c_char_p, ctypes.c_int]
        L.vnmc_cuda_workspace.restype = sz
        L.vnmc_cuda_workspace.argtypes = [vp, i64]
        L.vnmc_cuda_run.restype = ctypes.c_int
        L.vnmc_cuda_run.argtypes = [vp, vp, i64, vp, vp, sz, vp, ctypes.c_char_p, ctypes.c_int]
        L.vnmc_cuda_describe.argtypes = [vp, i64, ctypes.c_char_p, ctypes.c_int]
        L.vnmc_cuda_weight_bytes.restype = sz
        L.vnmc_cuda_weight_bytes.argtypes = [vp]
        L.vnmc_cuda_destroy.argtypes = [vp]
        self.L = L
        self.err = ctypes.create_string_buffer(1024)

    def create(self, N, K, V, M, values, cols, meta, act=10):
        h = self.L.vnmc_cuda_create(K, N, V, M, act, values.ctypes.data, cols.ctypes.data, meta.ctypes.data, None,
                                    None, 0, self.err, 1024)
        if not h:
            raise RuntimeError(self.err.value.decode())
        return h

    def clone(self, h):
        c = self.L.vnmc_cuda_clone(h, self.err, 1024)
        if not c:
            raise RuntimeError(self.err.value.decode())
        return c

    def run(self, h, X, T, Y, ws, wsb):
        rc = self.L.vnmc_cuda_run(h, X.data_ptr(), T, Y.data_ptr(), ws.data_ptr() if ws is not None else None, wsb,
                                  torch.cuda.current_stream().cuda_stream, self.err, 1024)
        if rc:
            raise RuntimeError(self.err.value.decode())

    def describe(self, h, T):
        b = ctypes.create_string_buffer(256)
        self.L.vnmc_cuda_describe(h, T, b, 256)
        return b.value.decode()


class Cslt:
    """bench/gpu/cslt_helper.cc through ctypes."""

    def __init__(self, path):
        L = ctypes.CDLL(path)
        vp = ctypes.c_void_p
        L.cslt_version.restype = ctypes.c_int
        L.cslt_setup.restype = vp
        L.cslt_setup.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        L.cslt_plan.restype = ctypes.c_int
        L.cslt_plan.argtypes = [vp, ctypes.c_int]
        L.cslt_workspace.restype = ctypes.c_longlong
        L.cslt_workspace.argtypes = [vp, ctypes.c_int]
        L.cslt_compressed_size.restype = ctypes.c_longlong
        L.cslt_compressed_size.argtypes = [vp, ctypes.c_int, ctypes.POINTER(ctypes.c_longlong)]
        L.cslt_compress.argtypes = [vp, ctypes.c_int, vp, vp, vp, vp]
        L.cslt_matmul.argtypes = [vp, ctypes.c_int, vp, vp, vp, vp, vp]
        L.cslt_destroy.argtypes = [vp]
        self.L = L
        self.version = L.cslt_version()

    def bench(self, W24, X, l2, algs, reps):
        """Best (ms per launch, alg id) of Y = X W24^T over rotating compressed copies."""
        N, K = W24.shape
        T = X.shape[0]
        mx = ctypes.c_int(-1)
        h = self.L.cslt_setup(N, K, T, ctypes.byref(mx))
        if not h:
            raise RuntimeError("cslt_setup failed")
        try:
            p0 = self.L.cslt_plan(h, 0)
            if p0 < 0:
                raise RuntimeError("cslt_plan(0) failed")
            cbs = ctypes.c_longlong(0)
            cs = self.L.cslt_compressed_size(h, p0, ctypes.byref(cbs))
            c0 = torch.empty(cs, device="cuda", dtype=torch.uint8)
            buf = torch.empty(max(cbs.value, 16), device="cuda", dtype=torch.uint8)
            st = torch.cuda.current_stream().cuda_stream
            if self.L.cslt_compress(h, p0, W24.data_ptr(), c0.data_ptr(), buf.data_ptr(), st):
                raise RuntimeError("cslt_compress failed")
            torch.cuda.synchronize()
            copies = [c0] + [c0.clone() for _ in range(copies_for(cs, l2) - 1)]
            Y = torch.empty(T, N, device="cuda", dtype=torch.float16)
            best = (None, None, None)

            def call(pid, C, ws):
                if self.L.cslt_matmul(h, pid, C.data_ptr(), X.data_ptr(), Y.data_ptr(), ws.data_ptr(),
                                      torch.cuda.current_stream().cuda_stream):
                    raise RuntimeError("cslt_matmul failed")

            for a in algs:
                if mx.value >= 0 and a > mx.value:
                    break
                pid = p0 if a == 0 else self.L.cslt_plan(h, a)
                if pid < 0:
                    break
                wsb = self.L.cslt_workspace(h, pid)
                if wsb < 0:
                    break
                ws = torch.empty(max(wsb, 16), device="cuda", dtype=torch.uint8)
                t = graph_time([lambda C=C, pid=pid, ws=ws: call(pid, C, ws) for C in copies], reps)
                if best[0] is None or t < best[0]:
                    best = (t, a, (pid, ws))
            # correctness spot check of the baseline itself
            call(best[2][0], copies[0], best[2][1])
            torch.cuda.synchronize()
            ref = X.float() @ W24.float().t()
            rel = ((Y.float() - ref).norm() / ref.norm()).item()
            return best[0], best[1], rel, mx.value
        finally:
            self.L.cslt_destroy(h)


def graph_time(fns, reps):
    """Median time per launch (ms) of CUDA-graph replays of the launch sequence fns."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / len(fns))
    del g
    return statistics.median(ts)


def copies_for(nbytes, l2):
    return int(min(256, max(2, math.ceil(3 * l2 / max(1, nbytes)))))


def prune24(W):
    w = W.view(-1, 4)
    idx = w.abs().argsort(dim=1)[:, :2]
    m = torch.ones_like(w, dtype=torch.bool)
    m.scatter_(1, idx, False)
    return (w * m).view_as(W)


def write_records(path, records):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(records, f, indent=1)
    os.replace(path + ".tmp", path)


def main():
    faulthandler.enable()
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="runtime-ops/build/cuda/libvnmc_cuda.so")
    ap.add_argument("--out", default="bench/gpu/results.json")
    ap.add_argument("--quick", action="store_true", help="two shapes, three token counts")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--cslt", default="", help="libcslt_helper.so (bench/gpu/cslt_helper.cc); empty: no cuSPARSELt")
    ap.add_argument("--algs", default="0,1,2,3,4,5", help="cuSPARSELt config ids to sweep")
    ap.add_argument("--shapes", default="", help="comma-separated indices into SHAPES")
    ap.add_argument("--tokens", default="")
    ap.add_argument("--tag", default="", help="free text stored in each record (kernel version)")
    ap.add_argument("--configs", default="", help="V:M pairs, e.g. 64:4,64:5,64:8,128:8,64:16 (default 64:5,64:8)")
    ap.add_argument("--kinds", default="", help="index kinds: windowed,permuted,globalperm (default windowed,permuted)")
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"],
                    help="activations and values (cuBLAS in the same type; cuSPARSELt only with fp16)")
    ap.add_argument("--no-describe", action="store_true",
                    help="skip vnmc_cuda_describe (segfaulted on an H100, 2026-11-26, not yet understood)")
    args = ap.parse_args()

    dev = torch.cuda.get_device_properties(0)
    card = dev.name
    l2 = getattr(dev, "L2_cache_size", 50 << 20)
    lib = Lib(args.lib)
    cslt = None
    if args.cslt:
        try:
            cslt = Cslt(args.cslt)
        except OSError as ex:
            log(f"no cuSPARSELt helper: {ex}")
    log(f"card: {card}, {dev.multi_processor_count} SMs, L2 {l2 >> 20} MB, torch {torch.__version__}, "
        f"cuSPARSELt {cslt.version if cslt else 'n/a'}")
    shapes = SHAPES
    tokens = TOKENS
    if args.shapes:
        shapes = [SHAPES[int(i)] for i in args.shapes.split(",")]
    if args.tokens:
        tokens = [int(t) for t in args.tokens.split(",")]
    if args.quick:
        shapes = shapes[:2] if not args.shapes else shapes
        tokens = [1, 16, 2048] if not args.tokens else tokens
    algs = [int(a) for a in args.algs.split(",")]
    bf16 = args.dtype == "bf16"
    dt = torch.bfloat16 if bf16 else torch.float16
    if bf16 and cslt is not None:
        log("cuSPARSELt helper is fp16 only: not timed with --dtype bf16")
        cslt = None
    configs = [tuple(int(v) for v in c.split(":")) for c in args.configs.split(",")] if args.configs else CONFIGS
    kinds = args.kinds.split(",") if args.kinds else KINDS
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    records = []
    t_start = time.time()

    for (sname, N, K) in shapes:
        log(f"== {sname}: N_out={N} K={K}")
        # ---- dense and 2:4 weights, rotated ----
        W0 = torch.randn(N, K, device="cuda", dtype=dt) * 0.05
        nd = copies_for(N * K * 2, l2)
        Wd = [W0.clone() for _ in range(nd)]
        W24 = prune24(W0) if cslt is not None else None
        # ---- ours, per config and index kind ----
        ours = {}
        for (V, M) in configs:
            for kind in kinds:
                values, cols, meta, _ = make_packed(N, K, V, M, kind, rng, bf16)
                t0 = time.time()
                h = lib.create(N, K, V, M, values, cols, meta, 16 if bf16 else 10)
                tprep = time.time() - t0
                wb = lib.L.vnmc_cuda_weight_bytes(h)
                n = copies_for(wb, l2)
                hs = [h] + [lib.clone(h) for _ in range(n - 1)]
                ours[(V, M, kind)] = (hs, wb, values, cols, meta, tprep)
                log(f"  {V}:2:{M} {kind}: {wb / 1e6:.1f} MB on device ({wb / (N * K * 2):.3f} of dense), "
                    f"prepare {tprep:.2f} s, {n} copies")

        for T in tokens:
            X = torch.randn(T, K, device="cuda", dtype=dt)
            Y = torch.empty(T, N, device="cuda", dtype=dt)
            t_dense = graph_time([lambda W=W: F.linear(X, W) for W in Wd], args.reps)
            log(f"  T={T:5d} cuBLAS {t_dense * 1e3:8.1f} us")
            t_cslt, best_alg = None, None
            if cslt is not None:
                Tc = max(T, 16)
                Xc = torch.randn(Tc, K, device="cuda", dtype=torch.float16) if Tc != T else X
                try:
                    t_cslt, best_alg, crel, mx = cslt.bench(W24, Xc, l2, algs, args.reps)
                    if crel > 1e-2:
                        log(f"    cuSPARSELt result off: rel err {crel:.2e}")
                except Exception as ex:  # noqa: BLE001
                    log(f"    cuSPARSELt failed: {str(ex).splitlines()[0][:120]}")
            for (V, M, kind), (hs, wb, values, cols, meta, _) in ours.items():
                # Bytes the decode path streams: the V:N:M packing (wb also counts the wgmma.sp prefill's
                # 2:4 copy of the weight, which decode never reads).
                pb = values.nbytes + cols.nbytes + meta.nbytes
                wsb = lib.L.vnmc_cuda_workspace(hs[0], T)
                ws = torch.empty(max(wsb, 16), device="cuda", dtype=torch.uint8)
                rel = None
                if T in (16, 256) or (T == tokens[-1] and 256 not in tokens):
                    lib.run(hs[0], X, T, Y, ws, wsb)
                    torch.cuda.synchronize()
                    Wr = dense_from_packed(values, cols, meta, N, K, V, M, bf16)
                    ref = X.float() @ Wr.t()
                    rel = ((Y.float() - ref).norm() / ref.norm()).item()
                    del Wr, ref
                t_ours = graph_time([lambda h=h: lib.run(h, X, T, Y, ws, wsb) for h in hs], args.reps)
                dense_flop = 2.0 * N * K * T
                rec = {
                    "card": card, "shape": f"{N}x{K}", "name": sname, "N_out": N, "K": K, "T": T,
                    "config": f"{V}:2:{M}", "indices": kind, "dtype": args.dtype,
                    "ours_ms": round(t_ours, 5), "cublas_ms": round(t_dense, 5),
                    "cusparselt_ms": round(t_cslt, 5) if t_cslt is not None else None,
                    "cusparselt_alg": best_alg, "cusparselt_T": max(T, 16),
                    "speedup_vs_cublas": round(t_dense / t_ours, 3),
                    "speedup_vs_cusparselt": round(t_cslt / t_ours, 3) if t_cslt else None,
                    "ours_weight_bytes": wb, "ours_weight_TBps": round(pb / (t_ours * 1e-3) / 1e12, 3),
                    "cublas_weight_TBps": round(N * K * 2 / (t_dense * 1e-3) / 1e12, 3),
                    "ours_dense_equiv_TFLOPs": round(dense_flop / (t_ours * 1e-3) / 1e12, 1),
                    "cublas_TFLOPs": round(dense_flop / (t_dense * 1e-3) / 1e12, 1),
                    "path": ("decode" if T <= 16 else "prefill") if args.no_describe else lib.describe(hs[0], T), "rel_err_vs_fp32": rel, "tag": args.tag,
                }
                records.append(rec)
                log(f"  T={T:5d} {V}:2:{M} {kind:8s}: ours {t_ours * 1e3:8.1f} us | cuBLAS {t_dense * 1e3:8.1f} us | "
                    f"cuSPARSELt {('%8.1f us (alg %d)' % (t_cslt * 1e3, best_alg)) if t_cslt else '   n/a'} | "
                    f"x{t_dense / t_ours:5.2f} vs cuBLAS | {rec['ours_weight_TBps']:.2f} TB/s | "
                    f"{rec['path']}" + (f" | rel err {rel:.2e}" if rel is not None else ""))
            del X, Y
        for (hs, *_rest) in ours.values():
            for h in hs:
                lib.L.vnmc_cuda_destroy(h)
        write_records(args.out, records)  # after every shape: a timed-out run keeps what it measured
        del Wd, W24, W0
        torch.cuda.empty_cache()

    write_records(args.out, records)
    log(f"wrote {len(records)} records to {args.out} in {time.time() - t_start:.0f} s")
    # summary table
    log("\nshape        T     config  idx       ours_us  cuBLAS_us  cSLt_us  x_cuBLAS  x_cSLt")
    for r in records:
        log(f"{r['shape']:11s} {r['T']:5d}  {r['config']:7s} {r['indices'][:3]:4s} {r['ours_ms'] * 1e3:9.1f} "
            f"{r['cublas_ms'] * 1e3:9.1f} {(r['cusparselt_ms'] or 0) * 1e3:8.1f} {r['speedup_vs_cublas']:8.2f} "
            f"{(r['speedup_vs_cusparselt'] or 0):7.2f}")


if __name__ == "__main__":
    sys.exit(main())
