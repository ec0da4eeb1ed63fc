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
Exit 0 all passed, 1 a failure, 77 no VnmcCUDA device (no GPU).
"""
import json
import os
import sys

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

    def ep_session(path, profile=False):
        so = ort.SessionOptions()
        so.add_provider_for_devices(devs, {})
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
    print(f"{npass} passed, {nfail} failed")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
