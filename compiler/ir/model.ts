import type { Graph } from "./graph.js";

export interface OpsetImport {
  domain: string;
  version: number;
}

/** A model-local function. Its body is an IR graph whose inputs are the formal inputs. */
export interface FunctionDef {
  domain: string;
  name: string;
  overload: string;
  /** Names of the function's attributes (the `attribute` field). */
  attributeNames: string[];
  /** Attributes with defaults (`attribute_proto`), opaque. */
  attributeProtos: unknown[];
  opsetImports: OpsetImport[];
  body: Graph;
  extras: unknown;
}

/** A whole ONNX model. Fields the compiler does not rewrite are kept in `extras`. */
export class Model {
  irVersion = 10;
  opsetImports: OpsetImport[] = [];
  producerName = "";
  producerVersion = "";
  metadata: Array<[string, string]> = [];
  functions: FunctionDef[] = [];
  extras: unknown;

  constructor(public graph: Graph) {}

  opsetVersion(domain: string): number | undefined {
    const d = domain === "ai.onnx" ? "" : domain;
    return this.opsetImports.find((o) => (o.domain === "ai.onnx" ? "" : o.domain) === d)?.version;
  }

  setOpset(domain: string, version: number): void {
    const o = this.opsetImports.find((x) => x.domain === domain);
    if (o) o.version = version;
    else this.opsetImports.push({ domain, version });
  }

  setMetadata(key: string, value: string): void {
    const e = this.metadata.find(([k]) => k === key);
    if (e) e[1] = value;
    else this.metadata.push([key, value]);
  }
}
