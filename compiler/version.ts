import { readFileSync } from "node:fs";

/** vnmc's version, from its package.json (two folders above the compiled module). */
export const VERSION: string = (() => {
  try {
    return JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version as string;
  } catch {
    return "0.0.0";
  }
})();
