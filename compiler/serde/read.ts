import { fromBinary } from "@bufbuild/protobuf";
import { readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import {
  type AttributeProto,
  AttributeProto_AttributeType as AT,
  type FunctionProto,
  type GraphProto,
  ModelProtoSchema,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type TypeProto,
  type ValueInfoProto,
} from "onnx-buf";
import { Codes, VnmcError } from "../diagnostics.js";
import type { Attribute, AttributeValue, AttrTensor } from "../ir/attribute.js";
import { Graph, NameScope } from "../ir/graph.js";
import { type FunctionDef, Model } from "../ir/model.js";
import type { Node } from "../ir/node.js";
import type { Dim, Value, ValueType } from "../ir/value.js";
import { copyMessage } from "./message-copy.js";
import { PAYLOAD_FIELDS, type TensorSource, tensorDataFromProto } from "./tensor-proto.js";

export interface LoadedModel {
  model: Model;
  /** Absolute path of the file it came from, when it came from a file. */
  path?: string;
  /** Size of the .onnx file itself (not counting external data). */
  fileBytes: number;
}

/** Read an ONNX model file (with embedded or external data). Weights stay lazy. */
export function readModelFile(path: string): LoadedModel {
  const abs = resolve(path);
  let size: number;
  try {
    const st = statSync(abs);
    if (!st.isFile()) throw new VnmcError(Codes.FILE_NOT_FOUND, `'${path}' is not a file; give the path of an .onnx model.`);
    size = st.size;
  } catch (e) {
    if (e instanceof VnmcError) throw e;
    throw new VnmcError(Codes.FILE_NOT_FOUND, `Cannot find '${path}'; check the path to the .onnx model.`);
  }
  const bytes = readFileSync(abs);
  const model = decodeModel(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path, { modelDir: dirname(abs) });
  return { model, path: abs, fileBytes: size };
}

/** Decode a model from bytes; external data is resolved against `src.modelDir`. */
export function decodeModel(bytes: Uint8Array, label: string, src: TensorSource): Model {
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, bytes, { readUnknownFields: true });
  } catch {
    throw new VnmcError(Codes.NOT_ONNX, `'${label}' is not a valid ONNX model (it does not decode as a ModelProto; is the file truncated?).`);
  }
  if (!proto.graph || proto.irVersion === 0n) {
    throw new VnmcError(Codes.NOT_ONNX, `'${label}' is not an ONNX model (no graph or IR version); export the model to ONNX first.`);
  }
  return new ModelReader(src).model(proto);
}

class ModelReader {
  constructor(private readonly src: TensorSource) {}
  private readonly names = new NameScope();

  model(p: ModelProto): Model {
    const graph = this.graph(p.graph!, null, null);
    const m = new Model(graph);
    m.irVersion = Number(p.irVersion);
    m.opsetImports = p.opsetImport.map((o) => ({ domain: o.domain, version: Number(o.version) }));
    m.producerName = p.producerName;
    m.producerVersion = p.producerVersion;
    m.metadata = p.metadataProps.map((e) => [e.key, e.value]);
    m.functions = p.functions.map((f) => this.function(f));
    m.extras = copyMessage(p, { graph: undefined, functions: [], opsetImport: [], metadataProps: [] });
    return m;
  }

  private function(f: FunctionProto): FunctionDef {
    // Function bodies have their own namespace: formal inputs are local names.
    const body = new Graph(f.name, new NameScope(), null, null);
    for (const name of f.input) if (name !== "") body.inputs.push(body.createValue(name));
    this.nodes(body, f.node);
    for (const name of f.output) body.outputs.push(this.resolve(body, name, `output of function '${f.name}'`));
    return {
      domain: f.domain,
      name: f.name,
      overload: f.overload,
      attributeNames: [...f.attribute],
      attributeProtos: f.attributeProto,
      opsetImports: f.opsetImport.map((o) => ({ domain: o.domain, version: Number(o.version) })),
      body,
      extras: copyMessage(f, { input: [], output: [], node: [], attribute: [], attributeProto: [], opsetImport: [], valueInfo: [] }),
    };
  }

  graph(p: GraphProto, parent: Graph | null, owner: Node | null): Graph {
    const scope = parent ? parent.names : this.names;
    const g = new Graph(p.name, scope, parent, owner);
    const initByName = new Map<string, TensorProto>(p.initializer.map((t) => [t.name, t]));
    for (const vi of p.input) {
      const v = g.createValue(vi.name, typeOf(vi.type));
      v.infoExtras = infoExtras(vi);
      const t = initByName.get(vi.name);
      if (t) this.attachInitializer(v, t);
      g.inputs.push(v);
    }
    for (const t of p.initializer) {
      if (g.local(t.name)?.isGraphInput) {
        g.initializers.push(g.local(t.name)!);
        continue;
      }
      const v = g.createValue(t.name);
      this.attachInitializer(v, t);
      g.initializers.push(v);
    }
    // Sparse initializers are kept verbatim; their names still define values nodes can read.
    for (const s of p.sparseInitializer) {
      const name = s.values?.name ?? "";
      if (name && !g.local(name)) g.createValue(name, { elemType: s.values?.dataType, shape: s.dims.map(Number) });
    }
    this.nodes(g, p.node);
    for (const vi of p.output) {
      const v = this.resolve(g, vi.name, `output of graph '${p.name}'`);
      if (vi.type) v.type = typeOf(vi.type);
      v.infoExtras = infoExtras(vi);
      g.outputs.push(v);
    }
    for (const vi of p.valueInfo) {
      const v = g.local(vi.name) ?? g.lookup(vi.name);
      if (!v) continue; // value_info for a name nothing defines: dropped, as onnx's checker would reject it
      v.type = typeOf(vi.type);
      v.infoExtras = infoExtras(vi);
      g.valueInfos.push(v);
    }
    g.extras = copyMessage(p, { node: [], initializer: [], input: [], output: [], valueInfo: [] });
    return g;
  }

  private attachInitializer(v: Value, t: TensorProto): void {
    v.initializer = tensorDataFromProto(t, this.src);
    v.initializerExtras = copyMessage(t, { ...PAYLOAD_FIELDS, dims: [], name: "" });
    v.type ??= { elemType: t.dataType, shape: t.dims.map(Number) };
  }

  /** Create all node outputs first, so nodes listed out of order still resolve, then wire inputs. */
  private nodes(g: Graph, protos: NodeProto[]): void {
    const created: Array<{ p: NodeProto; outs: Value[] }> = [];
    for (const p of protos) {
      const outs = p.output.map((name) => (name === "" ? g.freshValue("_unused") : g.createValue(name)));
      created.push({ p, outs });
    }
    for (const { p, outs } of created) {
      const inputs = p.input.map((name) => (name === "" ? null : this.resolve(g, name, `input of node '${p.name || p.opType}'`)));
      const node = g.addNode({ opType: p.opType, domain: p.domain, inputs, outputs: outs, attributes: [] });
      node.name = p.name;
      g.names.reserve(p.name);
      node.overload = p.overload;
      // Output slots that were empty ("") stay empty on write.
      p.output.forEach((name, i) => {
        if (name === "") outs[i]!.unnamedOutput = true;
      });
      node.attributes = p.attribute.map((a) => this.attribute(a, g, node));
      node.extras = copyMessage(p, { input: [], output: [], attribute: [], opType: "", domain: "", name: "", overload: "" });
    }
  }

  private resolve(g: Graph, name: string, what: string): Value {
    const v = g.lookup(name);
    if (!v) {
      throw new VnmcError(
        Codes.UNDEFINED_VALUE,
        `The ${what} is '${name}', which no graph input, initializer or node defines; the model is invalid (check it with onnx.checker).`,
      );
    }
    return v;
  }

  private attrTensor(t: TensorProto): AttrTensor {
    return { name: t.name, data: tensorDataFromProto(t, this.src), extras: copyMessage(t, { ...PAYLOAD_FIELDS, dims: [], name: "" }) };
  }

  private attribute(a: AttributeProto, g: Graph, node: Node): Attribute {
    const extras = copyMessage(a, {
      name: "", refAttrName: "", f: 0, i: 0n, s: new Uint8Array(0), t: undefined, g: undefined,
      floats: [], ints: [], strings: [], tensors: [], graphs: [], sparseTensor: undefined, sparseTensors: [],
      tp: undefined, typeProtos: [],
    });
    let value: AttributeValue;
    if (a.refAttrName !== "") {
      value = { kind: "ref", refAttrName: a.refAttrName, type: a.type };
    } else {
      switch (a.type) {
        case AT.FLOAT: value = { kind: "float", value: a.f }; break;
        case AT.INT: value = { kind: "int", value: a.i }; break;
        case AT.STRING: value = { kind: "string", value: a.s }; break;
        case AT.TENSOR: value = { kind: "tensor", value: this.attrTensor(a.t!) }; break;
        case AT.GRAPH: value = { kind: "graph", value: this.graph(a.g!, g, node) }; break;
        case AT.FLOATS: value = { kind: "floats", value: a.floats }; break;
        case AT.INTS: value = { kind: "ints", value: a.ints }; break;
        case AT.STRINGS: value = { kind: "strings", value: a.strings }; break;
        case AT.TENSORS: value = { kind: "tensors", value: a.tensors.map((t) => this.attrTensor(t)) }; break;
        case AT.GRAPHS: value = { kind: "graphs", value: a.graphs.map((sg) => this.graph(sg, g, node)) }; break;
        default: value = { kind: "opaque", value: a };
      }
    }
    return { name: a.name, value, extras };
  }
}

function infoExtras(vi: ValueInfoProto): unknown {
  return copyMessage(vi, { name: "", type: undefined });
}

export function typeOf(t: TypeProto | undefined): ValueType | undefined {
  if (!t) return undefined;
  if (t.value.case !== "tensorType") return { opaque: t };
  const tt = t.value.value;
  const shape: Dim[] | undefined = tt.shape
    ? tt.shape.dim.map((d) => (d.value.case === "dimValue" ? Number(d.value.value) : d.value.case === "dimParam" ? d.value.value : null))
    : undefined;
  return { elemType: tt.elemType, shape, opaque: t };
}
