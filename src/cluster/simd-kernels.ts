// The elementwise work of a ring allreduce (add a received piece into ours; divide by the world size
// for a mean) runs on the comm thread while the network moves the next piece, so its speed bounds the
// allreduce. A plain JS loop over Float32Arrays does ~2 ns per element here (V8 does not vectorise);
// a WebAssembly SIMD loop over the same memory does ~0.45 ns, ~0.65 ns including the copy of the
// received piece into wasm memory. So the collective buffers are shared WebAssembly memories, and these
// two functions are written directly in wasm bytecode (about 150 bytes; no toolchain needed at build).
//
// Both functions take byte offsets into the memory they were instantiated with and a count of float32
// elements; offsets need only 4-byte alignment (wasm SIMD loads tolerate any alignment).

import { wasm, type WasmMemory, type WasmModule } from './wasm-api';
import { uleb } from '../util/leb128';
import { F32, I32, op, section, V128, vec, wasmName as name } from '../util/wasm-ops';

export interface F32Kernels {
  /** mem[dst + i] += mem[src + i] for i < n (float32 elements, byte offsets). */
  add(dstByteOffset: number, srcByteOffset: number, n: number): void;
  /** mem[p + i] /= divisor for i < n, correctly rounded like a float32 division. */
  divide(byteOffset: number, n: number, divisor: number): void;
}

/** `for (; p < end; p += stride, q += stride) body` with p, q locals; end computed by `setEnd`. */
function countedLoop(p: number, q: number | undefined, end: number, stride: number, body: number[]): number[] {
  return [
    ...op.block, ...op.loop,
    ...op.get(p), ...op.get(end), ...op.i32GeU, ...op.brIf(1),
    ...body,
    ...op.get(p), ...op.i32Const(stride), ...op.i32Add, ...op.set(p),
    ...(q === undefined ? [] : [...op.get(q), ...op.i32Const(stride), ...op.i32Add, ...op.set(q)]),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
}

/** end = p + (n & mask) * 4 */
function setEnd(p: number, n: number, mask: number, end: number): number[] {
  return [...op.get(p), ...op.get(n), ...op.i32Const(mask), ...op.i32And, ...op.i32Const(2), ...op.i32Shl, ...op.i32Add, ...op.set(end)];
}

function buildModule(): Uint8Array {
  // add(dst, src, n): 16 floats per iteration as four v128 adds, then a scalar tail of < 16.
  const [d, s, n, end] = [0, 1, 2, 3];
  const addQuad = [0, 16, 32, 48].flatMap((o) => [
    ...op.get(d), ...op.get(d), ...op.v128Load(o), ...op.get(s), ...op.v128Load(o), ...op.f32x4Add, ...op.v128Store(o),
  ]);
  const addScalar = [...op.get(d), ...op.get(d), ...op.f32Load, ...op.get(s), ...op.f32Load, ...op.f32Add, ...op.f32Store];
  const addBody = [
    1, 1, I32, // one i32 local: end
    ...setEnd(d, n, -16, end), ...countedLoop(d, s, end, 64, addQuad),
    ...setEnd(d, n, 15, end), ...countedLoop(d, s, end, 4, addScalar),
    ...op.end,
  ];

  // divide(p, n, divisor): v128 lanes of 4, then a scalar tail of < 4.
  const [p, m, div, end2, splat] = [0, 1, 2, 3, 4];
  const divVec = [...op.get(p), ...op.get(p), ...op.v128Load(0), ...op.get(splat), ...op.f32x4Div, ...op.v128Store(0)];
  const divScalar = [...op.get(p), ...op.get(p), ...op.f32Load, ...op.get(div), ...op.f32Div, ...op.f32Store];
  const divideBody = [
    2, 1, I32, 1, V128, // locals: end (i32), splat (v128)
    ...op.get(div), ...op.f32x4Splat, ...op.set(splat),
    ...setEnd(p, m, -4, end2), ...countedLoop(p, undefined, end2, 16, divVec),
    ...setEnd(p, m, 3, end2), ...countedLoop(p, undefined, end2, 4, divScalar),
    ...op.end,
  ];

  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [2, 0x60, 3, I32, I32, I32, 0, 0x60, 3, I32, I32, F32, 0]), // types
    // import env.memory: shared (flag 3), 0 pages minimum, 65536 maximum: fits any shared memory.
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x03, ...uleb(0), ...uleb(65536)]),
    ...section(3, [2, 0, 1]), // functions: add has type 0, divide type 1
    ...section(7, [2, ...name('add'), 0x00, 0, ...name('divide'), 0x00, 1]),
    ...section(10, [2, ...vec(addBody), ...vec(divideBody)]),
  ];
  return new Uint8Array(bytes);
}

let compiled: WasmModule | null | undefined;

/** The compiled kernel module, or null where this runtime lacks wasm SIMD or shared memory. */
function kernelModule(): WasmModule | null {
  if (compiled === undefined) {
    try {
      compiled = new wasm.Module(buildModule());
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

export function simdAvailable(): boolean {
  return kernelModule() !== null;
}

/** Kernels bound to one shared memory: wasm SIMD where available, else the JS loops. */
export function kernelsFor(memory: WasmMemory, forceJs = false): F32Kernels {
  const mod = forceJs ? null : kernelModule();
  if (mod === null) return jsKernels(memory);
  const exports = new wasm.Instance(mod, { env: { memory } }).exports as unknown as {
    add(d: number, s: number, n: number): void;
    divide(p: number, n: number, divisor: number): void;
  };
  return {
    add: (d, s, n) => exports.add(d, s, n),
    divide: (p, n, divisor) => exports.divide(p, n, divisor),
  };
}

/** The same operations as plain loops: the fallback, and the reference the tests compare against. */
export function jsKernels(memory: WasmMemory): F32Kernels {
  return {
    add(d, s, n) {
      const buf = memory.buffer;
      const dst = new Float32Array(buf, d, n);
      const src = new Float32Array(buf, s, n);
      for (let i = 0; i < n; i++) dst[i] += src[i];
    },
    divide(p, n, divisor) {
      const a = new Float32Array(memory.buffer, p, n);
      const f = Math.fround(divisor);
      for (let i = 0; i < n; i++) a[i] = a[i] / f;
    },
  };
}
