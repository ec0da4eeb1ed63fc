"""Test of the execution-provider plugin libvnmc_ep.so in the stock onnxruntime Python package (>= 1.24).

    python3 test_ep.py LIBVNMC_EP.so LIBVNMC_ORT.so MODEL_DIR [--tokens 1,7,16,300]

Registers the plugin with onnxruntime.register_execution_provider_library, selects its "VnmcCUDA"
device with SessionOptions.add_provider_for_devices and runs every *.vnm.onnx in MODEL_DIR (fresh
random inputs per token count). Checks, per model and token count:
  - with profiling on, every VNMSparseGemm node ran on VnmcCUDA (float/float ones on the CPU kernel
    that the plugin supplies as its custom-op domain);
  - outputs vs the fallback function (a plain CPU session, no vnmc library), or, for models whose
    fallback cannot run (float activations with half values), vs the CPU kernel of libvnmc_ort.so:
    relative Frobenius error <= 1e-2 (fp16) / 3e-2 (bf16 values), nothing non-finite;
  - the same through IOBinding.
bad_*.vnm.onnx must fail to load with the kernel's validation message.
The provider option prefill_wgmma (Hopper wgmma.sp prefill and its 2:4 weight copy), on
mlp16_64-2-8.vnm.onnx and mlp32wbf16_64-2-8.vnm.onnx: each kernel's INFO log line (read from stderr)
must show "0" turning it off on every node (no wgmma.sp prefill, fewer device weight bytes than "1",
whose nodes must include wgmma.sp ones: sm_90), outputs of "0" must match "1", the session config
entry vnmc.prefill_wgmma = "0" must do the same without the option, and a bad value or an unknown
option must fail session creation.
Exit 0 all passed, 1 a failure, 77 no VnmcCUDA device (no GPU).
"""
import contextlib
import json
import os
import re
import sys
import tempfile
from io import StringIO  # (main() has a local named io: the IOBinding)

import numpy as np
import onnxruntime as ort


def rand_inputs(sess, T, rng):
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else T for d in i.shape]
        dt = {"tensor(float)": np.float32, "tensor(float16)": np.float16}[i.type]
        feeds[i.name] = rng.uniform(-1, 1, size=shape).astype(dt)
    return feeds


def rel_err(got, ref):
    got = got.astype(np.float64)
    ref = ref.astype(np.float64)
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


# One line per kernel (src/ort/cuda_kernel.cc, CudaGemmKernel::log_choice).
KERNEL_LINE = re.compile(r"\(CUDA\): prefill_wgmma=([01]) \((.*?)\), device weights (\d+) bytes, T=4096: (.*)$")


def with_stderr(fn):
    """Runs fn() with file descriptor 2 (where onnxruntime logs) sent to a file: (result, error, text)."""
    sys.stderr.flush()
    saved = os.dup(2)
    result = error = None
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001
            error = e
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    return result, error, text


def kernel_lines(text):
    """The kernels' lines: a list of (on, from, device weight bytes, prefill path)."""
    out = []
    for line in text.splitlines():
        m = KERNEL_LINE.search(line)
        if m:
            out.append((m.group(1) == "1", m.group(2), int(m.group(3)), m.group(4)))
    return out


def summary(lines):
    return (f"{len(lines)} nodes, {sum(on for on, *_ in lines)} with prefill_wgmma=1, "
            f"{sum('wgmma.sp' in p for *_, p in lines)} on wgmma.sp, {sum(b for _, _, b, _ in lines)} device "
            f"weight bytes" + (f", from {lines[0][1]}" if lines else ""))


def main():
    ep_lib, ort_lib, model_dir = sys.argv[1:4]
    tokens = [1, 7, 16, 300]
    if "--tokens" in sys.argv:
        tokens = [int(t) for t in sys.argv[sys.argv.index("--tokens") + 1].split(",")]
    print("onnxruntime", ort.__version__)
    ort.register_execution_provider_library("vnmc", os.path.abspath(ep_lib))
    devs = [d for d in ort.get_ep_devices() if d.ep_name == "VnmcCUDA"]
    print("EP devices:", [(d.ep_name, d.ep_vendor, str(d.device.type), d.device.vendor_id,
                           dict(d.device.metadata)) for d in ort.get_ep_devices()])
    if not devs:
        print("SKIP: no VnmcCUDA device (no GPU?)")
        return 77
    ort.set_default_logger_severity(3)
    npass = nfail = 0

    def check(ok, msg):
        nonlocal npass, nfail
        npass += ok
        nfail += not ok
        print(("ok   " if ok else "FAIL ") + msg, flush=True)

    def ep_session(path, profile=False, options=None, config=None, log_info=False):
        so = ort.SessionOptions()
        for k, v in (config or {}).items():
            so.add_session_config_entry(k, v)
        if log_info:
            so.log_severity_level = 1  # INFO: the kernels' prefill_wgmma lines
        so.add_provider_for_devices(devs, options or {})
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = "/tmp/vnmc_ep_prof"
        s = ort.InferenceSession(path, so)
        s.disable_fallback()  # a failing run must fail the test, not silently retry on the CPU
        return s

    models = sorted(f for f in os.listdir(model_dir) if f.endswith(".vnm.onnx"))
    rng = np.random.default_rng(5)
    for f in models:
        path = os.path.join(model_dir, f)
        if f.startswith("bad_"):
            try:
                ep_session(path)
                check(False, f"{f}: malformed model loaded")
            except Exception as e:  # noqa: BLE001
                msg = str(e).splitlines()[0][:300]
                check("VNMSparseGemm" in str(e), f"{f}: rejected at load: {msg}")
            continue
        try:
            sess = ep_session(path, profile=True)
        except Exception as e:  # noqa: BLE001
            check(False, f"{f}: EP session: {e}")
            continue
        try:
            ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            ref_kind = "fallback"
        except Exception:  # noqa: BLE001  (float activations with half values: no runnable fallback)
            so = ort.SessionOptions()
            so.register_custom_ops_library(os.path.abspath(ort_lib))
            ref = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            ref_kind = "CPU kernel"
        half_vals = "wbf16" in f
        tol = 3e-2 if half_vals else 1e-2
        for T in tokens:
            feeds = rand_inputs(sess, T, rng)
            got = sess.run(None, feeds)
            want = ref.run(None, feeds)
            for g, w, o in zip(got, want, sess.get_outputs()):
                e = rel_err(g, w)
                check(e <= tol, f"{f} T={T} out '{o.name}' {g.dtype}: VnmcCUDA vs {ref_kind} rel {e:.2e}")
        # IOBinding (host-bound input and output; the plugin's data transfer moves them).
        feeds = rand_inputs(sess, tokens[-1], rng)
        io = sess.io_binding()
        for k, v in feeds.items():
            io.bind_cpu_input(k, v)
        out_name = sess.get_outputs()[0].name
        io.bind_output(out_name)
        sess.run_with_iobinding(io)
        e = rel_err(io.copy_outputs_to_cpu()[0], ref.run(None, feeds)[0])
        check(e <= tol, f"{f} IOBinding T={tokens[-1]}: rel {e:.2e}")
        prof = sess.end_profiling()
        with open(prof) as fh:
            events = json.load(fh)
        placed = {}
        for ev in events:
            a = ev.get("args", {})
            if a.get("op_name") == "VNMSparseGemm":
                placed.setdefault(a.get("provider"), set()).add(ev.get("name", "").split("_kernel_time")[0])
        os.remove(prof)
        want_ep = "CPUExecutionProvider" if f.startswith("mlp32_") else "VnmcCUDA"
        check(set(placed) == {want_ep}, f"{f}: VNMSparseGemm nodes ran on {sorted(placed)} "
                                        f"({sum(len(v) for v in placed.values())} nodes)")
    # The prefill_wgmma switch (provider option, then session config entry; src/ort/cuda_kernel.h).
    for f in ("mlp16_64-2-8.vnm.onnx", "mlp32wbf16_64-2-8.vnm.onnx"):
        path = os.path.join(model_dir, f)
        if not os.path.exists(path):
            check(False, f"{f}: missing for the prefill_wgmma test")
            continue
        b = f"{f} prefill_wgmma:"
        sessions = {}
        for name, kw in (("option 1", {"options": {"prefill_wgmma": "1"}}),
                         ("option 0", {"options": {"prefill_wgmma": "0"}}),
                         ("config 0", {"config": {"vnmc.prefill_wgmma": "0"}})):
            sess, err, text = with_stderr(lambda kw=kw: ep_session(path, log_info=True, **kw))
            if err is not None:
                check(False, f"{b} {name}: EP session: {str(err).splitlines()[0][:300]}")
                continue
            sessions[name] = (sess, kernel_lines(text))
        if len(sessions) < 3:
            continue
        l1, l0, lc = (sessions[n][1] for n in ("option 1", "option 0", "config 0"))
        b1 = sum(x[2] for x in l1)
        check(len(l1) > 0 and all(on and "provider option" in fr for on, fr, _, _ in l1)
              and any("wgmma.sp" in p for *_, p in l1),
              f"{b} option \"1\": {summary(l1)} (needs wgmma.sp nodes: sm_90 and a 2:4 weight)")
        for name, lines, src in (("option \"0\"", l0, "provider option"),
                                 ("session config entry \"0\"", lc, "session config entry")):
            nb = sum(x[2] for x in lines)
            check(len(lines) == len(l1) and not any(on or "wgmma.sp" in p or src not in fr
                                                     for on, fr, _, p in lines) and nb < b1,
                  f"{b} {name}: {summary(lines)}; saves {b1 - nb} bytes")
        tol = 3e-2 if "wbf16" in f else 1e-2
        for T in tokens:
            feeds = rand_inputs(sessions["option 1"][0], T, rng)
            want = sessions["option 1"][0].run(None, feeds)
            for name in ("option 0", "config 0"):
                got = sessions[name][0].run(None, feeds)
                for g, w, o in zip(got, want, sessions[name][0].get_outputs()):
                    e = rel_err(g, w)
                    check(e <= tol, f"{b} T={T} out '{o.name}': {name} vs option 1 rel {e:.2e}")
        del sessions
        for opts, want in (({"prefill_wgmma": "maybe"}, ("prefill_wgmma", "accepted values")),
                           ({"prefil_wgmma": "0"}, ("unknown provider option", "prefil_wgmma"))):
            # The Python package catches a failing EP creation, prints the error and retries (before
            # disable_fallback() can be called), so the session may still load: the EP's own message in
            # the exception or on stderr is what shows that it rejected the option.
            out = StringIO()  # the package print()s the EP error to stdout
            with contextlib.redirect_stdout(out):
                _, err, text = with_stderr(lambda opts=opts: ep_session(path, options=opts))
            why = str(err) if err is not None else text + out.getvalue()
            hit = [ln for ln in why.splitlines() if all(w in ln for w in want)]
            check(bool(hit), f"{b} {opts} rejected: {(hit[0] if hit else '(no EP error)')[:300]}")
    print(f"{npass} passed, {nfail} failed")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
