import type { CompileState } from "../compiler/compile-state.js";
import { Codes, VnmcError } from "../compiler/diagnostics.js";
import { type Attribute, intAttr, refAttr, stringAttr, tensorAttr } from "../compiler/ir/attribute.js";
import { DataType } from "../compiler/ir/dtype.js";
import { Graph, NameScope } from "../compiler/ir/graph.js";
import type { FunctionDef, Model } from "../compiler/ir/model.js";
import { tensorFromTyped } from "../compiler/ir/tensor.js";
import type { Value } from "../compiler/ir/value.js";
import type { Pass, PassContext } from "../compiler/pass/pass.js";
import { VNM_DOMAIN, VNM_OP } from "./rewrite-to-vnm.js";

/** The oldest ai.onnx opset the function body can be written in (Unsqueeze/Squeeze take axes as inputs). */
export const MIN_FALLBACK_OPSET = 13;
const INT_ATTR = 2; // AttributeProto.INT

/**
 * Adds the com.vnmc opset import and the model-local function `com.vnmc::VNMSparseGemm`, whose body
 * rebuilds the dense weight from the packed inputs with standard operators and multiplies. Every
 * onnxruntime can run a compiled model through it; since the packed inputs are constants, the rebuild
 * folds away when the session is created.
 */
export class AddFallbackFunction implements Pass<CompileState> {
  readonly name = "add-fallback-function";

  run(model: Model, _ctx: PassContext<CompileState>): { modified: boolean } {
    const types = new Set<number>();
    for (const g of model.graph.allGraphs()) {
      for (const n of g.nodes) if (n.domain === VNM_DOMAIN && n.opType === VNM_OP) types.add(n.inputs[0]?.type?.elemType ?? n.inputs[1]!.initializer!.dataType);
    }
    if (types.size === 0) return { modified: false };
    if (model.opsetVersion(VNM_DOMAIN) === undefined) model.setOpset(VNM_DOMAIN, 1);
    const opset = model.opsetVersion("") ?? MIN_FALLBACK_OPSET;
    if (opset < 15 && types.size > 1) {
      throw new VnmcError(
        Codes.OPSET_TOO_OLD,
        `The model mixes activation types in rewritten layers at opset ${opset}; the fallback function needs opset 15 (CastLike) for that; convert the model to opset 15 or newer.`,
      );
    }
    if (!model.functions.some((f) => f.domain === VNM_DOMAIN && f.name === VNM_OP)) model.functions.push(buildFallbackFunction(opset, [...types][0]));
    return { modified: true };
  }
}

/** Small builder for function bodies: one node per call, fresh output names. */
class BodyBuilder {
  constructor(readonly g: Graph) {}
  op(opType: string, inputs: (Value | null)[], attributes: Attribute[] = [], hint = opType): Value {
    const out = this.g.freshValue(hint);
    this.g.addNode({ opType, inputs, outputs: [out], attributes });
    return out;
  }
  ints(values: number[], hint = "c"): Value {
    const data = tensorFromTyped(DataType.INT64, [values.length], BigInt64Array.from(values.map(BigInt)));
    return this.op("Constant", [], [tensorAttr("value", data)], hint);
  }
  floats(values: number[], hint = "f"): Value {
    const data = tensorFromTyped(DataType.FLOAT, [values.length], Float32Array.from(values));
    return this.op("Constant", [], [tensorAttr("value", data)], hint);
  }
  /** A 1-element int64 tensor from an int attribute of the function. */
  attrInt(name: string): Value {
    const scalar = this.op("Constant", [], [refAttr("value_int", name, INT_ATTR)], name);
    return this.op("Reshape", [scalar, this.ints([1], "one_dim")], [], `${name}_1d`);
  }
}

/** The function body, written against the model's own ai.onnx opset (onnxruntime inlines it with that). */
export function buildFallbackFunction(opset: number, activationType: number = DataType.FLOAT): FunctionDef {
  const g = new Graph(VNM_OP, new NameScope());
  const [A, values, columns, meta, bias, rowIndex] = ["A", "values", "columns", "meta", "bias", "row_index"].map((n) => g.createValue(n)) as [
    Value, Value, Value, Value, Value, Value,
  ];
  g.inputs.push(A, values, columns, meta, bias, rowIndex);
  const b = new BodyBuilder(g);
  const K = b.attrInt("in_features");
  const N = b.attrInt("out_features");
  const V = b.attrInt("v");
  const zero1 = b.ints([0], "zero");
  const one1 = b.ints([1], "one");
  const two1 = b.ints([2], "two");
  const four1 = b.ints([4], "four");
  const minus1 = b.ints([-1], "minus_one");

  // Sizes from the packed shapes: values is [R, 2G], columns [R/V, G, 4].
  const vShape = b.op("Shape", [values], [], "values_shape");
  const R = b.op("Gather", [vShape, zero1], [], "R");
  const G = b.op("Div", [b.op("Gather", [vShape, one1]), two1], [], "G");
  const B = b.op("Gather", [b.op("Shape", [columns]), zero1], [], "blocks");

  // meta nibbles → (p0, p1) per row and group. Low nibble first; bits 0-1 = p0, bits 2-3 = p1.
  const metaI = b.op("Cast", [meta], [intAttr("to", DataType.INT32)], "meta_i32");
  const sixteen = b.op("Cast", [b.ints([16])], [intAttr("to", DataType.INT32)], "sixteen");
  const fourI = b.op("Cast", [four1], [intAttr("to", DataType.INT32)], "four_i32");
  const lo = b.op("Unsqueeze", [b.op("Mod", [metaI, sixteen]), b.ints([2])], [], "lo");
  const hi = b.op("Unsqueeze", [b.op("Div", [metaI, sixteen]), b.ints([2])], [], "hi");
  const nibbles = b.op("Reshape", [b.op("Concat", [lo, hi], [intAttr("axis", 2)]), b.op("Concat", [R, minus1], [intAttr("axis", 0)])], [], "nibbles");
  const codes = b.op("Slice", [nibbles, zero1, G, one1], [], "codes");
  const p0 = b.op("Unsqueeze", [b.op("Mod", [codes, fourI]), b.ints([2])], [], "p0");
  const p1 = b.op("Unsqueeze", [b.op("Div", [codes, fourI]), b.ints([2])], [], "p1");
  const pos = b.op("Cast", [b.op("Concat", [p0, p1], [intAttr("axis", 2)])], [intAttr("to", DataType.INT64)], "positions");

  // The block's 4 columns, repeated for each of its V rows → absolute input channel of each value.
  const colsBlock = b.op("Unsqueeze", [columns, one1], [], "columns_4d");
  const colsExpanded = b.op("Expand", [colsBlock, b.op("Concat", [B, V, G, four1], [intAttr("axis", 0)])], [], "columns_rows");
  const colsRows = b.op("Reshape", [colsExpanded, b.op("Concat", [R, G, four1], [intAttr("axis", 0)])], [], "columns_per_row");
  const gathered = b.op("GatherElements", [colsRows, pos], [intAttr("axis", 2)], "abs_columns");
  const absIdx = b.op("Cast", [b.op("Reshape", [gathered, b.op("Concat", [R, minus1], [intAttr("axis", 0)])])], [intAttr("to", DataType.INT64)], "abs_index");

  // Dense packed rows [R, K], rebuilt in float32 (onnxruntime's CPU kernels lack float16 for some of these
  // ops, and constant folding needs CPU kernels). Zero values (padding) are sent to a spare column K, so a
  // padding slot that repeats a real index can never overwrite a weight, whatever the opset.
  const valuesF = b.op("Cast", [values], [intAttr("to", DataType.FLOAT)], "values_f32");
  const isZero = b.op("Equal", [valuesF, b.floats([0])], [], "is_zero");
  const target = b.op("Where", [isZero, K, absIdx], [], "scatter_index");
  const zeros = b.op("ConstantOfShape", [b.op("Concat", [R, b.op("Add", [K, one1])], [intAttr("axis", 0)])], [], "zeros");
  // Since opset 16 duplicates add up, as the contract's reference semantics say.
  const reduction = opset >= 16 ? [stringAttr("reduction", "add")] : [];
  const scattered = b.op("ScatterElements", [zeros, target, valuesF], [intAttr("axis", 1), ...reduction], "scattered");
  const packedRows = b.op("Slice", [scattered, zero1, K, one1], [], "packed_dense");

  // Output channel o takes the packed row r with row_index[r] = o; padding rows (-1) go to a spare slot N.
  const ri = b.op("Cast", [rowIndex], [intAttr("to", DataType.INT64)], "row_index_i64");
  const isPad = b.op("Less", [ri, b.ints([0])], [], "is_padding");
  const targetRow = b.op("Where", [isPad, N, ri], [], "target_row");
  const scalar = (v: Value) => b.op("Squeeze", [v, zero1], [], "scalar");
  const rows = b.op("Range", [scalar(zero1), scalar(R), scalar(one1)], [], "packed_row_ids");
  const inverse0 = b.op("ConstantOfShape", [b.op("Add", [N, one1])], [tensorAttr("value", tensorFromTyped(DataType.INT64, [1], new BigInt64Array([0n])))], "inverse0");
  const inverse = b.op("ScatterElements", [inverse0, targetRow, rows], [intAttr("axis", 0)], "inverse_full");
  const source = b.op("Slice", [inverse, zero1, N, zero1], [], "source_row");
  const rebuilt = b.op("Gather", [packedRows, source], [intAttr("axis", 0)], "W_f32");
  // Back to the activations' type: CastLike since opset 15; before it, the one type all nodes use.
  const W = opset >= 15 ? b.op("CastLike", [rebuilt, A], [], "W") : b.op("Cast", [rebuilt], [intAttr("to", activationType)], "W");

  // Y = A · Wᵀ + bias over any leading batch dims (Gemm takes the optional bias as C).
  const A2 = b.op("Reshape", [A, b.op("Concat", [minus1, K], [intAttr("axis", 0)])], [], "A_2d");
  const Y2 = b.op("Gemm", [A2, W, bias], [intAttr("transB", 1)], "Y_2d");
  const batch = b.op("Slice", [b.op("Shape", [A], [], "A_shape"), zero1, minus1, zero1], [], "batch_dims");
  const Y = b.op("Reshape", [Y2, b.op("Concat", [batch, N], [intAttr("axis", 0)])], [], "Y");
  g.outputs.push(Y);

  return {
    domain: VNM_DOMAIN,
    name: VNM_OP,
    overload: "",
    attributeNames: ["in_features", "out_features", "v", "m", "n"],
    attributeProtos: [],
    opsetImports: [{ domain: "", version: opset }],
    body: g,
    extras: undefined,
  };
}
