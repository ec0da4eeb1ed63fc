// Local check of bench/gpu/e2e_models.py's packer and graphs against vnmc's CPU kernel (no GPU):
// generate small models into /tmp/e2e_local (e2e_models.main with small LLAMA/VIT dicts, see
// docs/performance.md "End to end"), then `node bench/gpu/e2e_cpu_check.mjs` from the repository root.
import { NativeSession } from "../../dist/compiler/runtime/native-session.js";
import { Tensor } from "onnxruntime-common";
const f2h = (f) => { const b = new DataView(new ArrayBuffer(4)); b.setFloat32(0, f); const x = b.getUint32(0);
  const s = (x >>> 16) & 0x8000; let e = ((x >>> 23) & 0xff) - 112; const m = x & 0x7fffff;
  if (e <= 0) return s; return s | (e << 10) | (m >>> 13); };
const h2f = (h) => { const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023; return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15); };
const rnd = (shape) => { const n = shape.reduce((a, b) => a * b, 1); const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = f2h(Math.random() * 2 - 1); return new Tensor("float16", a, shape); };
for (const [name, feeds] of [
  ["chk_vit_small_64-2-8", { pixel_values: [2, 3, 224, 224] }],
  ["chk_vit_small_64-2-5", { pixel_values: [2, 3, 224, 224] }],
  ["chk_llama_small_pre_64-2-5", { hidden_states: [1, 7, 128] }],
  ["chk_llama_small_dec_64-2-8", { hidden_states: [1, 1, 128], ...Object.fromEntries([0, 1].flatMap((i) => [[`past_key_${i}`, [1, 2, 5, 64]], [`past_value_${i}`, [1, 2, 5, 64]]])) }],
]) {
  const f = {}; for (const [k, s] of Object.entries(feeds)) f[k] = rnd(s);
  const a = await NativeSession.create(`/tmp/e2e_local/${name}_pruned.onnx`, { customOps: false, intraOpNumThreads: 2 });
  const b = await NativeSession.create(`/tmp/e2e_local/${name}.onnx`, { intraOpNumThreads: 2 });
  const ya = (await a.run(f)).logits.data, yb = (await b.run(f)).logits.data;
  let num = 0, den = 0; for (let i = 0; i < ya.length; i++) { const r = h2f(ya[i]), x = h2f(yb[i]); num += (x - r) ** 2; den += r * r; }
  console.log(name, "CPU kernel vs pruned dense rel", Math.sqrt(num / den).toExponential(2), "n", ya.length);
}
