import type { Model } from "../../compiler/ir/model.js";
import type { Node } from "../../compiler/ir/node.js";
import { toFloat32 } from "../../compiler/weights/float-view.js";
import { denseFromPacked } from "./vnm-reference.js";

export interface RebuiltLayer {
  node: Node;
  outFeatures: number;
  inFeatures: number;
  v: number;
  m: number;
  /** Dense W [out, in] rebuilt from the packed tensors by the independent reference decoder. */
  W: Float32Array;
  bias: Float32Array | null;
}

function int32(node: Node, slot: number): Int32Array {
  const b = node.inputs[slot]!.initializer!.read().slice();
  return new Int32Array(b.buffer, 0, b.byteLength / 4);
}

/** Every VNMSparseGemm of a compiled model with its weight rebuilt independently of vnmc's packer. */
export function rebuiltLayers(model: Model): RebuiltLayer[] {
  const out: RebuiltLayer[] = [];
  for (const g of model.graph.allGraphs()) {
    for (const node of g.nodes) {
      if (node.domain !== "com.vnmc" || node.opType !== "VNMSparseGemm") continue;
      const attr = (n: string) => node.intAttr(n, -1);
      const [outFeatures, inFeatures, v, m] = [attr("out_features"), attr("in_features"), attr("v"), attr("m")];
      const values = node.inputs[1]!.initializer!;
      const W = denseFromPacked({
        values: Float32Array.from(toFloat32(values.read(), values.dataType)),
        columns: int32(node, 2),
        meta: node.inputs[3]!.initializer!.read().slice(),
        rowIndex: node.inputs[5] ? int32(node, 5) : null,
        outFeatures, inFeatures, v, m,
      });
      const biasT = node.inputs[4]?.initializer;
      const bias = biasT ? Float32Array.from(toFloat32(biasT.read(), biasT.dataType)) : null;
      out.push({ node, outFeatures, inFeatures, v, m, W, bias });
    }
  }
  return out;
}
