import { type Candidate, type CompileState, nodeLabel } from "../compiler/compile-state.js";
import { Codes } from "../compiler/diagnostics.js";
import { dataTypeName } from "../compiler/ir/dtype.js";
import type { Model } from "../compiler/ir/model.js";
import type { Node } from "../compiler/ir/node.js";
import { matchesAny } from "../compiler/glob.js";
import { type Pass, type PassContext, reporter } from "../compiler/pass/pass.js";
import { PRUNABLE_TYPES } from "../compiler/weights/float-view.js";
import { constantTensor, viewConstant } from "./constant-chain.js";

type Verdict = { ok: true; candidate: Omit<Candidate, "label" | "config"> } | { ok: false; code: string; reason: string; shape?: number[] };

const isOnnx = (n: Node) => n.domain === "" || n.domain === "ai.onnx";

/**
 * Finds MatMul/Gemm nodes whose weight is a constant 2-D matrix, in every graph scope. Every MatMul/Gemm
 * that is left alone gets a reason code.
 */
export class FindCandidates implements Pass<CompileState> {
  readonly name = "find-candidates";

  run(model: Model, ctx: PassContext<CompileState>): { modified: boolean } {
    const report = reporter(this.name, ctx);
    const { options } = ctx.state;
    let index = 0;
    for (const graph of model.graph.allGraphs()) {
      for (const node of graph.nodes) {
        if (!isOnnx(node) || (node.opType !== "MatMul" && node.opType !== "Gemm")) continue;
        const label = nodeLabel(node, index++);
        let verdict = node.opType === "MatMul" ? this.matmul(node) : this.gemm(node);
        if (verdict.ok) {
          const { outFeatures, inFeatures } = verdict.candidate.recipe;
          if (options.include.length > 0 && !matchesAny(node.name, options.include)) {
            verdict = { ok: false, code: Codes.SKIP_EXCLUDED, reason: "not matched by --include", shape: [outFeatures, inFeatures] };
          } else if (matchesAny(node.name, options.exclude)) {
            verdict = { ok: false, code: Codes.SKIP_EXCLUDED, reason: "matched by --exclude", shape: [outFeatures, inFeatures] };
          } else if (outFeatures * inFeatures < options.minSize) {
            verdict = {
              ok: false, code: Codes.SKIP_TOO_SMALL,
              reason: `${outFeatures * inFeatures} weights, below --min-size ${options.minSize}`, shape: [outFeatures, inFeatures],
            };
          }
        }
        if (verdict.ok) {
          // A chosen V:N:M (--sparsity/--speedup) is found again by label when verification re-reads the model.
          ctx.state.candidates.push({ ...verdict.candidate, label, config: options.chosen?.get(label) ?? options.vnm });
        } else {
          ctx.state.skipped.push({ label, opType: node.opType, code: verdict.code, reason: verdict.reason, weightShape: verdict.shape });
          report("info", verdict.code, `${node.opType} '${label}' left dense: ${verdict.reason}`, label);
        }
      }
    }
    return { modified: false };
  }

  private matmul(node: Node): Verdict {
    const [a, b] = node.inputs;
    if (!a || !b) return { ok: false, code: Codes.SKIP_SHAPE, reason: "missing input" };
    const view = viewConstant(b);
    if (!view) return { ok: false, code: Codes.SKIP_ACTIVATION_WEIGHT, reason: "B is not a constant (activation × activation)" };
    if (view.dims.length !== 2) {
      return view.dims.length > 2
        ? { ok: false, code: Codes.SKIP_WEIGHT_RANK, reason: `weight is ${view.dims.length}-D [${view.dims}], only 2-D weights are supported`, shape: view.dims }
        : { ok: false, code: Codes.SKIP_SHAPE, reason: `weight is ${view.dims.length}-D`, shape: view.dims };
    }
    const [inF, outF] = view.dims as [number, number];
    const bad = this.checkTypes(node, view.dataType, inF, outF);
    if (bad) return bad;
    return {
      ok: true,
      candidate: {
        node, graph: node.graph, weightInput: b, weightScope: view.scope,
        // MatMul's B is [in, out]: W [out, in] is its transpose, unless a Transpose already flipped it.
        recipe: { base: view.base, baseName: view.baseName, transposed: !view.transposed, dataType: view.dataType, scale: 1, outFeatures: outF, inFeatures: inF },
      },
    };
  }

  private gemm(node: Node): Verdict {
    const [a, b, c] = node.inputs;
    if (!a || !b) return { ok: false, code: Codes.SKIP_SHAPE, reason: "missing input" };
    const view = viewConstant(b);
    if (!view) return { ok: false, code: Codes.SKIP_ACTIVATION_WEIGHT, reason: "B is not a constant (activation × activation)" };
    if (view.dims.length !== 2) return { ok: false, code: Codes.SKIP_WEIGHT_RANK, reason: `weight is ${view.dims.length}-D`, shape: view.dims };
    const transB = node.intAttr("transB", 0) !== 0;
    const [inF, outF] = (transB ? [view.dims[1], view.dims[0]] : view.dims) as [number, number];
    const bad = this.checkTypes(node, view.dataType, inF, outF);
    if (bad) return bad;
    const alpha = node.floatAttr("alpha", 1);
    const cInfo: Candidate["gemm"] = {
      transA: node.intAttr("transA", 0) !== 0, beta: node.floatAttr("beta", 1), c: c ?? null, cConstant: c ? constantTensor(c)?.data : undefined,
    };
    // Gemm's B is [in, out] unless transB; a Transpose in front flips that once more.
    const transposed = transB ? view.transposed : !view.transposed;
    return {
      ok: true,
      candidate: {
        node, graph: node.graph, weightInput: b, weightScope: view.scope, gemm: cInfo,
        recipe: { base: view.base, baseName: view.baseName, transposed, dataType: view.dataType, scale: alpha, outFeatures: outF, inFeatures: inF },
      },
    };
  }

  private checkTypes(node: Node, wType: number, inF: number, outF: number): Verdict | undefined {
    if (!PRUNABLE_TYPES.includes(wType)) {
      return { ok: false, code: Codes.SKIP_DTYPE, reason: `weight type ${dataTypeName(wType)} is not supported (float, float16, bfloat16 are)`, shape: [outF, inF] };
    }
    const aType = node.inputs[0]?.type?.elemType;
    if (aType !== undefined && aType !== wType) {
      return { ok: false, code: Codes.SKIP_DTYPE, reason: `activation type ${dataTypeName(aType)} differs from weight type ${dataTypeName(wType)}`, shape: [outF, inF] };
    }
    if (inF < 4 || outF < 1) {
      return { ok: false, code: Codes.SKIP_SHAPE, reason: `weight [${outF}, ${inF}] has fewer than 4 input features`, shape: [outF, inF] };
    }
    return undefined;
  }
}
