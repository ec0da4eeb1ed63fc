export * from "./dtype.js";
export * from "./tensor.js";
export * from "./value.js";
export * from "./attribute.js";
export * from "./node.js";
export * from "./graph.js";
export * from "./model.js";
