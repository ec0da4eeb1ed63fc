import { create, fromBinary, toBinary, toJson, equals } from "@bufbuild/protobuf";
import { expect } from "chai";
import { readFileSync, symlinkSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  AttributeProtoSchema, FunctionProtoSchema, GraphProtoSchema, ModelProtoSchema, NodeProtoSchema,
  SparseTensorProtoSchema, StringStringEntryProtoSchema, TensorProtoSchema, TypeProtoSchema, ValueInfoProtoSchema,
  type ModelProto,
} from "onnx-buf";
import { VnmcError } from "../../compiler/diagnostics.js";
import { decodeModel, readModelFile } from "../../compiler/serde/read.js";
import { encodeModel, writeModelFile } from "../../compiler/serde/write.js";
import { tempDir } from "../support/tmp.js";

const kv = (key: string, value: string) => create(StringStringEntryProtoSchema, { key, value });
const floatType = (dims: Array<number | string>) =>
  create(TypeProtoSchema, {
    value: {
      case: "tensorType",
      value: {
        elemType: 1,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { value: { case: "dimValue" as const, value: BigInt(d) } } : { value: { case: "dimParam" as const, value: d } })) },
      },
    },
  });

/** A model that uses fields newer than ONNX 1.10 and some unusual ones. */
function richModel(): ModelProto {
  const weight = create(TensorProtoSchema, {
    name: "W", dims: [4n, 3n], dataType: 1, rawData: new Uint8Array(new Float32Array(12).fill(0.5).buffer), metadataProps: [kv("origin", "test")],
  });
  const f8 = create(TensorProtoSchema, { name: "f8", dims: [4n], dataType: 17, rawData: new Uint8Array([1, 2, 3, 4]) });
  const i4 = create(TensorProtoSchema, { name: "i4", dims: [3n], dataType: 22, rawData: new Uint8Array([0x21, 0x03]) });
  const typed = create(TensorProtoSchema, { name: "typed", dims: [2n], dataType: 1, floatData: [1.5, -2] });
  const strings = create(TensorProtoSchema, { name: "names", dims: [1n], dataType: 8, stringData: [new TextEncoder().encode("hi")] });
  const sparse = create(SparseTensorProtoSchema, {
    dims: [4n, 4n],
    values: create(TensorProtoSchema, { name: "S", dims: [1n], dataType: 1, floatData: [3] }),
    indices: create(TensorProtoSchema, { name: "S_idx", dims: [1n], dataType: 7, int64Data: [5n] }),
  });
  const thenBranch = create(GraphProtoSchema, {
    name: "then",
    node: [create(NodeProtoSchema, { opType: "MatMul", input: ["X", "W"], output: ["t_out"], name: "inner_mm" })],
    output: [create(ValueInfoProtoSchema, { name: "t_out", type: floatType(["batch", 3]) })],
  });
  const elseBranch = create(GraphProtoSchema, {
    name: "else",
    node: [create(NodeProtoSchema, { opType: "Identity", input: ["X"], output: ["e_out"] })],
    output: [create(ValueInfoProtoSchema, { name: "e_out", type: floatType(["batch", 4]) })],
  });
  const fn = create(FunctionProtoSchema, {
    name: "MyFn", domain: "custom", overload: "v2", input: ["x"], output: ["y"], attribute: ["alpha"],
    attributeProto: [create(AttributeProtoSchema, { name: "beta", type: 1, f: 2 })],
    node: [create(NodeProtoSchema, { opType: "Identity", input: ["x"], output: ["y"], metadataProps: [kv("k", "fn-node")] })],
    opsetImport: [{ domain: "", version: 18n }],
    metadataProps: [kv("fn", "meta")],
    docString: "a function",
  });
  const graph = create(GraphProtoSchema, {
    name: "main",
    input: [create(ValueInfoProtoSchema, { name: "X", type: floatType(["batch", 4]), metadataProps: [kv("vi", "x")] }), create(ValueInfoProtoSchema, { name: "cond", type: create(TypeProtoSchema, { value: { case: "tensorType", value: { elemType: 9, shape: { dim: [] } } } }) })],
    output: [create(ValueInfoProtoSchema, { name: "Y", type: floatType(["batch", 3]) }), create(ValueInfoProtoSchema, { name: "Z", type: floatType(["batch", 4]) })],
    initializer: [weight, f8, i4, typed, strings],
    sparseInitializer: [sparse],
    node: [
      create(NodeProtoSchema, {
        opType: "If", input: ["cond"], output: ["Y"], name: "branch", metadataProps: [kv("node", "meta")], docString: "doc",
        attribute: [create(AttributeProtoSchema, { name: "then_branch", type: 5, g: thenBranch }), create(AttributeProtoSchema, { name: "else_branch", type: 5, g: elseBranch })],
      }),
      create(NodeProtoSchema, { opType: "MyFn", domain: "custom", overload: "v2", input: ["X"], output: ["Z"], name: "fn_call", attribute: [create(AttributeProtoSchema, { name: "alpha", type: 1, f: 0.5 })] }),
    ],
    metadataProps: [kv("graph", "meta")],
    docString: "graph doc",
  });
  return create(ModelProtoSchema, {
    irVersion: 10n, producerName: "test", opsetImport: [{ domain: "", version: 18n }, { domain: "custom", version: 1n }],
    graph, functions: [fn], metadataProps: [kv("model", "meta")], docString: "model doc",
  });
}

/** Normalise the ways the same tensor payload can be stored, so models compare by meaning. */
function normalise(m: ModelProto): ModelProto {
  const copy = fromBinary(ModelProtoSchema, toBinary(ModelProtoSchema, m));
  for (const t of copy.graph!.initializer) {
    if (t.floatData.length) {
      t.rawData = new Uint8Array(Float32Array.from(t.floatData).buffer);
      t.floatData = [];
    }
  }
  return copy;
}

describe("ONNX reader/writer", () => {
  it("keeps every field through a load/save round trip (metadata, overloads, float8/int4, sparse, subgraphs)", () => {
    const original = richModel();
    const bytes = toBinary(ModelProtoSchema, original);
    const model = decodeModel(bytes, "rich", { modelDir: undefined });
    const again = fromBinary(ModelProtoSchema, encodeModel(model));
    expect(toJson(ModelProtoSchema, normalise(again))).to.deep.equal(toJson(ModelProtoSchema, normalise(original)));
    expect(equals(ModelProtoSchema, normalise(again), normalise(original))).to.equal(true);
    // Typed float_data is rewritten as raw_data with the same values.
    const typed = again.graph!.initializer.find((t) => t.name === "typed")!;
    expect(Array.from(new Float32Array(typed.rawData.slice().buffer))).to.deep.equal([1.5, -2]);
  });

  it("keeps unknown fields", () => {
    const bytes = toBinary(ModelProtoSchema, richModel());
    // field 999 (varint 7) appended at the ModelProto level
    const withUnknown = new Uint8Array([...bytes, 0xb8, 0x3e, 7]);
    const out = encodeModel(decodeModel(withUnknown, "u", { modelDir: undefined }));
    expect(Buffer.from(out).includes(Buffer.from([0xb8, 0x3e, 7]))).to.equal(true);
  });

  it("resolves subgraph reads of outer-scope weights to the outer value", () => {
    const model = decodeModel(toBinary(ModelProtoSchema, richModel()), "rich", { modelDir: undefined });
    const w = model.graph.local("W")!;
    expect(w.uses.map((u) => u.node.name)).to.deep.equal(["inner_mm"]);
    expect(w.uses[0]!.node.graph.parent).to.equal(model.graph);
  });

  describe("external data", () => {
    let t: ReturnType<typeof tempDir>;
    beforeEach(() => (t = tempDir()));
    afterEach(() => t.cleanup());

    function externalModel(location: string, offset = 0, length = 48): Uint8Array {
      const m = richModel();
      const w = m.graph!.initializer[0]!;
      w.rawData = new Uint8Array(0);
      w.dataLocation = 1;
      w.externalData = [kv("location", location), kv("offset", String(offset)), kv("length", String(length))];
      return toBinary(ModelProtoSchema, m);
    }

    it("writes and reads back external data, atomically", () => {
      const model = decodeModel(toBinary(ModelProtoSchema, richModel()), "rich", { modelDir: undefined });
      const path = join(t.dir, "m.onnx");
      const res = writeModelFile(model, path, { externalData: true, externalThreshold: 16 });
      expect(res.dataPath).to.equal(path + ".data");
      const back = readModelFile(path).model;
      const data = back.graph.local("W")!.initializer!;
      expect((data as { path?: string }).path).to.match(/m\.onnx\.data$/);
      expect(Array.from(new Float32Array(data.read().slice().buffer))).to.deep.equal(new Array(12).fill(0.5));
    });

    it("forces external data when the weights would not fit in one protobuf", () => {
      const model = decodeModel(toBinary(ModelProtoSchema, richModel()), "rich", { modelDir: undefined });
      const path = join(t.dir, "big.onnx");
      const res = writeModelFile(model, path, { embedLimit: 16, externalThreshold: 16 });
      expect(res.externalForced).to.equal(true);
      expect(res.dataPath).to.equal(path + ".data");
      expect(readModelFile(path).model.graph.local("W")!.initializer!.constructor.name).to.equal("ExternalFileTensor");
    });

    const bad: Array<[string, (dir: string) => Uint8Array, RegExp]> = [
      ["an absolute path", () => externalModel("/etc/passwd"), /outside the model's folder/],
      ["a .. path", () => externalModel("../w.bin"), /outside the model's folder/],
      ["a missing file", () => externalModel("nope.bin"), /is missing/],
      ["a range past the end of the file", (dir) => (writeFileSync(join(dir, "w.bin"), new Uint8Array(40)), externalModel("w.bin")), /has only 40/],
      ["a length that does not match the shape", (dir) => (writeFileSync(join(dir, "w.bin"), new Uint8Array(100)), externalModel("w.bin", 0, 44)), /need 48/],
      ["a link leading outside", (dir) => {
        mkdirSync(join(dir, "model"));
        writeFileSync(join(dir, "outside.bin"), new Uint8Array(48));
        symlinkSync(join(dir, "outside.bin"), join(dir, "model", "w.bin"));
        return externalModel("w.bin");
      }, /link that leads outside/],
    ];
    for (const [what, make, msg] of bad) {
      it(`refuses ${what}`, () => {
        const bytes = make(t.dir);
        const dir = what.startsWith("a link") ? join(t.dir, "model") : t.dir;
        const path = join(dir, "m.onnx");
        writeFileSync(path, bytes);
        expect(() => readModelFile(path)).to.throw(VnmcError, msg);
      });
    }
  });

  it("rejects files that are not ONNX or are truncated, with one clear sentence", () => {
    const t = tempDir();
    try {
      const junk = join(t.dir, "junk.onnx");
      writeFileSync(junk, "this is not a model");
      expect(() => readModelFile(junk)).to.throw(VnmcError, /not .*ONNX model/);
      const full = toBinary(ModelProtoSchema, richModel());
      const cut = join(t.dir, "cut.onnx");
      writeFileSync(cut, full.subarray(0, Math.floor(full.length * 0.6)));
      expect(() => readModelFile(cut)).to.throw(VnmcError);
      expect(() => readModelFile(join(t.dir, "missing.onnx"))).to.throw(VnmcError, /Cannot find/);
      expect(readFileSync(junk, "utf8")).to.equal("this is not a model");
    } finally {
      t.cleanup();
    }
  });
});
