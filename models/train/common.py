"""Shared helpers of the trainers: seeding, ONNX export and post-export checks."""
import json
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def env_info():
    info = {"torch": torch.__version__, "python": sys.version.split()[0]}
    try:
        import onnx
        info["onnx"] = onnx.__version__
    except ImportError:
        pass
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    else:
        info["device"] = "cpu"
    return info


def _fold_initializer_transposes(model):
    """Replace Transpose(initializer W, perm=[1,0]) by an initializer `W.T`, so that MatMul/Gemm
    read a constant 2-D weight directly (the dynamo exporter can leave such transposes)."""
    from onnx import numpy_helper
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    uses = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    taken = set(inits) | {o for n in g.node for o in n.output} | {v.name for v in g.input}
    keep, renames = [], {}
    for n in g.node:
        if n.op_type == "Transpose" and len(n.input) == 1 and n.input[0] in inits:
            perm = [list(a.ints) for a in n.attribute if a.name == "perm"]
            w = numpy_helper.to_array(inits[n.input[0]])
            if w.ndim == 2 and (not perm or perm[0] == [1, 0]):
                name = n.input[0] + ".T"
                if name in taken:
                    name = n.output[0]
                taken.add(name)
                g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w.T), name))
                if uses.get(n.input[0], 0) == 1:
                    g.initializer.remove(inits[n.input[0]])
                renames[n.output[0]] = name
                continue
        keep.append(n)
    if renames:
        for n in keep:
            for k, i in enumerate(n.input):
                if i in renames:
                    n.input[k] = renames[i]
        for o in g.output:
            if o.name in renames:
                raise ValueError(f"graph output {o.name} is a transposed weight")
        del g.node[:]
        g.node.extend(keep)
    return len(renames)


def _name_matmul_weights(model):
    """Give the constant weight of each MatMul/Gemm the name of its module: the legacy exporter
    names nodes after modules (`/blocks.0/attn/qkv/MatMul`) but weights `onnx::MatMul_123`."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    used = set(inits) | {v.name for v in g.input} | {o for n in g.node for o in n.output}
    renames = {}
    for n in g.node:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        old = n.input[1]
        if not old.startswith("onnx::") and not old.startswith("val_"):
            continue
        parts = [p for p in n.name.split("/") if p][:-1]
        if not parts:
            continue
        new = ".".join(parts) + (".weight" if n.op_type == "Gemm" else ".weight_t")
        if new in used or old in renames:
            continue
        renames[old] = new
        used.add(new)
    for i in g.initializer:
        if i.name in renames:
            i.name = renames[i.name]
    for n in g.node:
        for k, name in enumerate(n.input):
            if name in renames:
                n.input[k] = renames[name]
    return len(renames)


def export_onnx(model, args, path, input_names, output_names, dynamic_axes, opset=17):
    """Export fp32 `model` (on CPU, eval mode) to a single ONNX file; returns a summary dict."""
    import onnx
    model = model.float().cpu().eval()
    args = tuple(a.cpu() for a in args)
    exporter = "torchscript"
    import inspect
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    try:
        torch.onnx.export(model, args, path, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                          **legacy)
    except Exception as e:  # the legacy exporter may be gone in this PyTorch
        log(f"legacy exporter failed ({type(e).__name__}: {e}); trying dynamo=True")
        exporter = "dynamo"
        torch.onnx.export(model, args, path, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=True, external_data=False)
    m = onnx.load(path, load_external_data=True)
    folded = _fold_initializer_transposes(m)
    renamed = _name_matmul_weights(m)
    onnx.checker.check_model(m)
    for f in os.listdir(os.path.dirname(path) or "."):
        if f.startswith(os.path.basename(path)) and f != os.path.basename(path):
            os.remove(os.path.join(os.path.dirname(path), f))
    onnx.save(m, path)
    inits = {i.name: i for i in m.graph.initializer}
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    const_mm = [n.name for n in m.graph.node
                if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits
                and len(inits[n.input[1]].dims) == 2]
    summary = {"exporter": exporter, "opset": opset, "bytes": os.path.getsize(path), "ops": ops,
               "matmul_const_weights": const_mm, "folded_transposes": folded, "renamed_weights": renamed,
               "params": int(sum(p.numel() for p in model.parameters()))}
    log(f"exported {path}: {summary['bytes']} bytes via {exporter}, {len(const_mm)} MatMul/Gemm with constant 2-D weights")
    log("  ops:", json.dumps(ops))
    log("  weights:", ", ".join(const_mm))
    return summary


def ort_session(path):
    """A CPU onnxruntime session, or None where onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        log("onnxruntime is not installed: ONNX checks skipped")
        return None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class Mlp(nn.Module):
    """The transformer MLP both trainers use; module names (fc1, fc2) become the ONNX node names."""

    def __init__(self, d, hidden):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
