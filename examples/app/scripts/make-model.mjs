// Writes models/mlp.onnx, a small seeded MLP (64 -> 128 -> 32), with vnmc's model builders.
// A real project has its own exported models here.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const vnmc = dirname(fileURLToPath(import.meta.resolve("vnmc"))); // <vnmc>/dist/compiler
const here = dirname(dirname(fileURLToPath(import.meta.url)));
mkdirSync(join(here, "models"), { recursive: true });
execFileSync(process.execPath, [join(vnmc, "..", "models", "cli.js"), "mlp", "-o", join(here, "models", "mlp.onnx"),
  "--in-features", "64", "--hidden", "128", "--out-features", "32"], { stdio: "inherit" });
