// WebAssembly SIMD for the contiguous float32 passes of augmentation: the vertical blend of a resize,
// both passes of a Gaussian blur and normalisation. V8 does not vectorise JS loops (~2 ns per float32
// multiply-add on the machines here); f32x4 does four at a time. The gathers (a resize's horizontal
// taps, a rotation) stay in JS.
//
// The data has to live in the module's memory, so a render allocates its image patches from an Arena
// over that memory (one per thread) and copies only the final sample out. Every kernel has a JS twin
// with the same float32 arithmetic, operation by operation (Math.fround after each one: a float64
// result of float32 operands rounds to the correctly rounded float32 result), so results are the same
// bits with or without SIMD, and for arrays that are not in the arena.
//
// Kernels run over whole 16-byte vectors: they may read and write up to 12 bytes past n floats (48 for
// normalize). Arena allocations are padded for that; callers that work row by row go in increasing
// row order, so the spill into the next row is overwritten when that row is computed.
//
// The module is ~200 bytes of hand-encoded bytecode (no toolchain at build time).

import { uleb } from '../util/leb128';
import { F32, I32, op, section, V128, wasmName } from '../util/wasm-ops';

const WASM = (globalThis as unknown as { WebAssembly: WasmGlobal }).WebAssembly;

interface WasmGlobal {
  Memory: new (d: { initial: number }) => { buffer: ArrayBuffer; grow(pages: number): number };
  Module: new (bytes: Uint8Array) => unknown;
  Instance: new (m: unknown, imports: unknown) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

type Memory = InstanceType<WasmGlobal['Memory']>;

// --- encoding ------------------------------------------------------------------------------------

/** p += k for each pointer local in `ptrs`. */
const advance = (ptrs: number[], k: number) => ptrs.flatMap((p) => [...op.get(p), ...op.i32Const(k), ...op.i32Add, ...op.set(p)]);

/**
 * A loop `while (dst < end) { body; advance pointers by step }` where end = dst + n * 4, with
 * dst in local `dst`, n in local `n`, end in local `endLocal`.
 */
function vectorLoop(dst: number, n: number, endLocal: number, ptrs: number[], step: number, body: number[]): number[] {
  return [
    ...op.get(dst), ...op.get(n), ...op.i32Const(2), ...op.i32Shl, ...op.i32Add, ...op.set(endLocal),
    ...op.block, ...op.loop,
    ...op.get(dst), ...op.get(endLocal), ...op.i32GeU, ...op.brIf(1),
    ...body,
    ...advance(ptrs, step),
    ...op.br(0), ...op.end, ...op.end,
  ];
}

interface FuncDef {
  name: string;
  params: number[];
  locals: number[]; // one entry per local, by type
  body: number[];
}

const FUNCS: FuncDef[] = [
  {
    // lerp(dst, a, b, n, w): dst = a + (b - a) * w
    name: 'lerp',
    params: [I32, I32, I32, I32, F32],
    locals: [I32, V128], // 5 end, 6 wv
    body: [
      ...op.get(4), ...op.f32x4Splat, ...op.set(6),
      ...vectorLoop(0, 3, 5, [0, 1, 2], 16, [
        ...op.get(0),
        ...op.get(1), ...op.v128Load(),
        ...op.get(2), ...op.v128Load(), ...op.get(1), ...op.v128Load(), ...op.f32x4Sub,
        ...op.get(6), ...op.f32x4Mul,
        ...op.f32x4Add,
        ...op.v128Store(),
      ]),
    ],
  },
  {
    // mulTo(dst, src, n, k): dst = src * k
    name: 'mulTo',
    params: [I32, I32, I32, F32],
    locals: [I32, V128], // 4 end, 5 kv
    body: [...op.get(3), ...op.f32x4Splat, ...op.set(5), ...vectorLoop(0, 2, 4, [0, 1], 16, [...op.get(0), ...op.get(1), ...op.v128Load(), ...op.get(5), ...op.f32x4Mul, ...op.v128Store()])],
  },
  {
    // mulAdd(dst, src, n, k): dst = dst + src * k
    name: 'mulAdd',
    params: [I32, I32, I32, F32],
    locals: [I32, V128],
    body: [
      ...op.get(3), ...op.f32x4Splat, ...op.set(5),
      ...vectorLoop(0, 2, 4, [0, 1], 16, [...op.get(0), ...op.get(0), ...op.v128Load(), ...op.get(1), ...op.v128Load(), ...op.get(5), ...op.f32x4Mul, ...op.f32x4Add, ...op.v128Store()]),
    ],
  },
  {
    // normalize(p, n, pat): in place, 12 floats per step; pat holds the mean pattern (12 floats, the
    // channel means repeated) and then the 1/std pattern: p[i] = (p[i] - mean[i % 3]) * inv[i % 3]
    name: 'normalize',
    params: [I32, I32, I32],
    locals: [I32, V128, V128, V128, V128, V128, V128], // 3 end, 4-6 means, 7-9 invs
    body: [
      ...[0, 1, 2].flatMap((k) => [...op.get(2), ...op.v128Load(16 * k), ...op.set(4 + k), ...op.get(2), ...op.v128Load(48 + 16 * k), ...op.set(7 + k)]),
      ...vectorLoop(0, 1, 3, [0], 48, [0, 1, 2].flatMap((k) => [...op.get(0), ...op.get(0), ...op.v128Load(16 * k), ...op.get(4 + k), ...op.f32x4Sub, ...op.get(7 + k), ...op.f32x4Mul, ...op.v128Store(16 * k)])),
    ],
  },
];

/** A WebAssembly vector of encoded items: their count, then the items. */
function items(list: number[][]): number[] {
  return [...uleb(list.length), ...list.flat()];
}

function moduleBytes(): Uint8Array {
  const types = items(FUNCS.map((f) => [0x60, ...items(f.params.map((p) => [p])), 0]));
  const importSec = [...uleb(1), ...wasmName('env'), ...wasmName('memory'), 0x02, 0x00, ...uleb(1)]; // memory, min 1 page
  const funcSec = items(FUNCS.map((_, i) => uleb(i)));
  const exportSec = items(FUNCS.map((f, i) => [...wasmName(f.name), 0x00, ...uleb(i)]));
  const code = items(
    FUNCS.map((f) => {
      const locals = items(f.locals.map((t) => [1, t]));
      const body = [...locals, ...f.body, ...op.end];
      return [...uleb(body.length), ...body];
    }),
  );
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, types),
    ...section(2, importSec),
    ...section(3, funcSec),
    ...section(7, exportSec),
    ...section(10, code),
  ]);
}

// --- kernels -------------------------------------------------------------------------------------

interface Exports {
  lerp(dst: number, a: number, b: number, n: number, w: number): void;
  mulTo(dst: number, src: number, n: number, k: number): void;
  mulAdd(dst: number, src: number, n: number, k: number): void;
  normalize(p: number, n: number, pat: number): void;
}

const fr = Math.fround;

/** Bump allocator of float32 arrays in the module's memory. */
export class Arena {
  private used = 0;
  constructor(readonly memory: Memory) {}

  get buffer(): ArrayBuffer {
    return this.memory.buffer;
  }

  /** A float32 array of n elements (contents undefined), 64-byte aligned, followed by >= 64 spare bytes. */
  f32(n: number): Float32Array {
    const bytes = Math.ceil((n * 4 + 64) / 64) * 64;
    if (this.used + bytes > this.memory.buffer.byteLength) throw new ArenaFull(this.used + bytes);
    const a = new Float32Array(this.memory.buffer, this.used, n);
    this.used += bytes;
    return a;
  }

  reset(): void {
    this.used = 0;
  }

  /** Grows the memory to at least `bytes` (views handed out before are invalid afterwards). */
  grow(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((Math.max(bytes, 2 * have) - have) / 65536));
  }
}

export class ArenaFull extends Error {
  constructor(readonly needed: number) {
    super(`augmentation arena needs ${needed} bytes`);
  }
}

let exportsCache: Exports | null | undefined;
let arenaCache: Arena | null = null;

/** The thread's arena, or null when SIMD is unavailable or SEGDIST_NO_SIMD is set. */
export function simdArena(): Arena | null {
  if (exportsCache === undefined) {
    exportsCache = null;
    if (process.env.SEGDIST_NO_SIMD !== '1') {
      try {
        const bytes = moduleBytes();
        if (WASM.validate(bytes)) {
          const memory = new WASM.Memory({ initial: 256 }); // 16 MiB, grown on demand
          const instance = new WASM.Instance(new WASM.Module(bytes), { env: { memory } });
          exportsCache = instance.exports as unknown as Exports;
          arenaCache = new Arena(memory);
        }
      } catch {
        exportsCache = null;
      }
    }
  }
  return arenaCache;
}

function inArena(...arrays: Float32Array[]): boolean {
  const buf = arenaCache?.buffer;
  return buf !== undefined && arrays.every((a) => a.buffer === buf);
}

/** dst[i] = a[i] + (b[i] - a[i]) * w, i < n, in float32 arithmetic. Arrays are (view, float offset). */
export function lerp(dst: Float32Array, d: number, a: Float32Array, ao: number, b: Float32Array, bo: number, n: number, w: number): void {
  if (exportsCache && inArena(dst, a, b)) {
    exportsCache.lerp(dst.byteOffset + 4 * d, a.byteOffset + 4 * ao, b.byteOffset + 4 * bo, n, w);
    return;
  }
  const wf = fr(w);
  for (let i = 0; i < n; i++) {
    const x = a[ao + i];
    dst[d + i] = x + fr(fr(b[bo + i] - x) * wf);
  }
}

/** dst[i] = src[i] * k (add: dst[i] + src[i] * k), i < n, float32 arithmetic. */
export function mulTo(dst: Float32Array, d: number, src: Float32Array, so: number, n: number, k: number, add: boolean): void {
  if (exportsCache && inArena(dst, src)) {
    if (add) exportsCache.mulAdd(dst.byteOffset + 4 * d, src.byteOffset + 4 * so, n, k);
    else exportsCache.mulTo(dst.byteOffset + 4 * d, src.byteOffset + 4 * so, n, k);
    return;
  }
  const kf = fr(k);
  if (add) for (let i = 0; i < n; i++) dst[d + i] = dst[d + i] + fr(src[so + i] * kf);
  else for (let i = 0; i < n; i++) dst[d + i] = src[so + i] * kf;
}

/** In place over a whole HWC array: (v - mean[c]) * (1 / std[c]) in float32 arithmetic. */
export function normalizeF32(data: Float32Array, mean: readonly number[], std: readonly number[]): void {
  const m = mean.map(fr);
  const inv = std.map((s) => fr(1 / s));
  if (exportsCache && arenaCache && inArena(data)) {
    const pat = arenaCache.f32(24);
    for (let i = 0; i < 12; i++) {
      pat[i] = m[i % 3];
      pat[12 + i] = inv[i % 3];
    }
    exportsCache.normalize(data.byteOffset, data.length, pat.byteOffset);
    return;
  }
  for (let i = 0; i < data.length; i += 3) {
    data[i] = fr(data[i] - m[0]) * inv[0];
    data[i + 1] = fr(data[i + 1] - m[1]) * inv[1];
    data[i + 2] = fr(data[i + 2] - m[2]) * inv[2];
  }
}
