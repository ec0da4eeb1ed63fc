"""Prepares the GPU integration test models on the GPU machine (onnx there, no Node).

    python3 prepare_models.py SRC_DIR DST_DIR

Copies the compiled models of make_test_models.sh and derives:
  mlp32w16_64-2-8.vnm.onnx / mlp32wbf16_64-2-8.vnm.onnx: float activations with float16 / bfloat16
      values (the reduced-precision-weight form; the fallback function is left as written, so only
      the kernels run these);
  bad_meta.vnm.onnx: one meta nibble set to 0b0101 (p0 = p1, invalid);
  bad_columns.vnm.onnx: one column index = K (out of range).
"""
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def vnm_nodes(model):
    return [n for n in model.graph.node if n.op_type == "VNMSparseGemm" and n.domain == "com.vnmc"]


def inits(model):
    return {t.name: t for t in model.graph.initializer}


def replace(model, name, tensor):
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(tensor)
            return
    raise KeyError(name)


def to_bf16(a):
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def main(src, dst):
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f.endswith(".onnx"):
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    m32 = onnx.load(os.path.join(src, "mlp32_64-2-8.vnm.onnx"))
    for kind in ("w16", "wbf16"):
        m = onnx.ModelProto()
        m.CopyFrom(m32)
        ini = inits(m)
        for n in vnm_nodes(m):
            v = numpy_helper.to_array(ini[n.input[1]])
            if kind == "w16":
                t = numpy_helper.from_array(v.astype(np.float16), n.input[1])
            else:
                t = onnx.TensorProto()
                t.name = n.input[1]
                t.data_type = onnx.TensorProto.BFLOAT16
                t.dims.extend(v.shape)
                t.raw_data = to_bf16(v).tobytes()
            replace(m, n.input[1], t)
        onnx.save(m, os.path.join(dst, f"mlp32{kind}_64-2-8.vnm.onnx"))
    m16 = onnx.load(os.path.join(src, "mlp16_64-2-8.vnm.onnx"))
    for kind in ("meta", "columns"):
        m = onnx.ModelProto()
        m.CopyFrom(m16)
        n = vnm_nodes(m)[0]
        ini = inits(m)
        if kind == "meta":
            a = numpy_helper.to_array(ini[n.input[3]]).copy()
            a.flat[3] = (a.flat[3] & 0xF0) | 0x5
            replace(m, n.input[3], numpy_helper.from_array(a, n.input[3]))
        else:
            k = [a.i for a in n.attribute if a.name == "in_features"][0]
            a = numpy_helper.to_array(ini[n.input[2]]).copy()
            a.flat[5] = k
            replace(m, n.input[2], numpy_helper.from_array(a, n.input[2]))
        onnx.save(m, os.path.join(dst, f"bad_{kind}.vnm.onnx"))
    print("models:", sorted(os.listdir(dst)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
