// Inner loops of our kernels, written directly in WebAssembly (SIMD) bytecode and run on the tfjs
// wasm backend's own memory (imported, so tensors are read and written in place): batch norm's
// passes, a float32 exp (softmax), and strided copies (im2col of the conv filter gradient, Slice).
// About 2.3 KB of code, encoded here at first use; no toolchain.
//
// Why not JS loops over heap views: V8 does not vectorise, so a pass costs ~2-4 ns per float where
// the stock wasm kernels take ~0.3-1 ns; fusing BN's ~19 stock passes into 5 JS passes came out no
// faster than the stock kernels. These loops take 4 floats per instruction.
//
// The batch-norm loops walk an NHWC tensor row by row (a row = one pixel's C channels, `rowBytes` =
// 4*C bytes, C a multiple of 4) with per-channel parameters (scale, shift, mean, ...) as float
// arrays of C entries, also in wasm memory. Pointers are byte offsets. Sums accumulate in float32 here; callers
// pass at most SUM_CHUNK_ROWS rows per call and add the partial sums in float64.

import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { uleb } from '../util/leb128';
import { I32, op, section, V128, vec, wasmName as name } from '../util/wasm-ops';

/** Rows per call of the summing loops (float32 partial sums, combined in float64 by the caller). */
export const SUM_CHUNK_ROWS = 256;

// --- row loops -----------------------------------------------------------------------------------

/**
 * A function over `rows` rows of `rowBytes` bytes. Parameters: the row pointers (advanced by
 * rowBytes per row), then rows, rowBytes, then per-channel pointers (indexed by the byte offset j
 * within the row). `body` gets accessors and returns the code for one 16-byte step at offset j.
 */
interface LoopFn {
  name: string;
  rowPtrs: string[];
  channelPtrs: string[];
  body: (a: Access) => number[];
}

interface Access {
  /** Pushes the v128 at pointer `p` + j. */
  load(p: string): number[];
  /** Stores the v128 produced by `value` at pointer `p` + j. */
  store(p: string, value: number[]): number[];
  /** A scratch v128 local (0 or 1). */
  tmp(i: number): { set: number[]; get: number[]; tee: number[] };
  zero: number[];
}

function buildLoop(fn: LoopFn): { params: number; body: number[] } {
  const names = [...fn.rowPtrs, 'rows', 'rowBytes', ...fn.channelPtrs];
  const idx = (n: string) => {
    const i = names.indexOf(n);
    if (i < 0) throw new Error(`wasm-simd: no parameter ${n} in ${fn.name}`);
    return i;
  };
  const end = names.length;
  const j = end + 1;
  const v0 = end + 2;
  const addr = (p: string) => [...op.get(idx(p)), ...op.get(j), ...op.i32Add];
  const access: Access = {
    load: (p) => [...addr(p), ...op.v128Load()],
    store: (p, value) => [...addr(p), ...value, ...op.v128Store()],
    tmp: (i) => ({ set: op.set(v0 + i), get: op.get(v0 + i), tee: op.tee(v0 + i) }),
    zero: op.v128Zero,
  };
  const first = idx(fn.rowPtrs[0]);
  const rows = idx('rows');
  const rowBytes = idx('rowBytes');
  const body = [
    2, 2, I32, 2, V128, // locals: end, j (i32); two v128 scratch
    // end = first + rows * rowBytes
    ...op.get(first), ...op.get(rows), ...op.get(rowBytes), ...op.i32Mul, ...op.i32Add, ...op.set(end),
    ...op.block, ...op.loop,
    ...op.get(first), ...op.get(end), ...op.i32GeU, ...op.brIf(1),
    ...op.i32Const(0), ...op.set(j),
    ...op.loop,
    ...fn.body(access),
    ...op.get(j), ...op.i32Const(16), ...op.i32Add, ...op.tee(j), ...op.get(rowBytes), ...op.i32LtU, ...op.brIf(0),
    ...op.end,
    ...fn.rowPtrs.flatMap((p) => [...op.get(idx(p)), ...op.get(rowBytes), ...op.i32Add, ...op.set(idx(p))]),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.end,
  ];
  return { params: names.length, body };
}

const { f32x4Add: add, f32x4Sub: sub, f32x4Mul: mul, f32x4Gt: gt, v128And: and } = op;

/** g = dy masked by y > 0 */
const masked = (a: Access, dy: string, y: string) => [...a.load(dy), ...a.load(y), ...a.zero, ...gt, ...and];

const LOOPS: LoopFn[] = [
  { name: 'sum', rowPtrs: ['x'], channelPtrs: ['acc'],
    body: (a) => a.store('acc', [...a.load('acc'), ...a.load('x'), ...add]) },
  { name: 'sqdev', rowPtrs: ['x'], channelPtrs: ['mean', 'acc'],
    body: (a) => [
      ...a.load('x'), ...a.load('mean'), ...sub, ...a.tmp(0).set,
      ...a.store('acc', [...a.load('acc'), ...a.tmp(0).get, ...a.tmp(0).get, ...mul, ...add]),
    ] },
  { name: 'affine', rowPtrs: ['x', 'y'], channelPtrs: ['scale', 'shift'],
    body: (a) => a.store('y', [...a.load('x'), ...a.load('scale'), ...mul, ...a.load('shift'), ...add]) },
  { name: 'affineRelu', rowPtrs: ['x', 'y'], channelPtrs: ['scale', 'shift'],
    body: (a) => a.store('y', [
      ...a.load('x'), ...a.load('scale'), ...mul, ...a.load('shift'), ...add, ...a.tmp(0).tee,
      ...a.tmp(0).get, ...a.zero, ...gt, ...and,
    ]) },
  { name: 'affineRes', rowPtrs: ['x', 'r', 'y'], channelPtrs: ['scale', 'shift'],
    body: (a) => a.store('y', [...a.load('x'), ...a.load('scale'), ...mul, ...a.load('shift'), ...add, ...a.load('r'), ...add]) },
  { name: 'affineResRelu', rowPtrs: ['x', 'r', 'y'], channelPtrs: ['scale', 'shift'],
    body: (a) => a.store('y', [
      ...a.load('x'), ...a.load('scale'), ...mul, ...a.load('shift'), ...add, ...a.load('r'), ...add, ...a.tmp(0).tee,
      ...a.tmp(0).get, ...a.zero, ...gt, ...and,
    ]) },
  { name: 'gsums', rowPtrs: ['dy', 'x'], channelPtrs: ['mean', 'sg', 'sgx'],
    body: (a) => [
      ...a.load('dy'), ...a.tmp(0).set,
      ...a.store('sg', [...a.load('sg'), ...a.tmp(0).get, ...add]),
      ...a.store('sgx', [...a.load('sgx'), ...a.tmp(0).get, ...a.load('x'), ...a.load('mean'), ...sub, ...mul, ...add]),
    ] },
  { name: 'gsumsRelu', rowPtrs: ['dy', 'x', 'y'], channelPtrs: ['mean', 'sg', 'sgx'],
    body: (a) => [
      ...masked(a, 'dy', 'y'), ...a.tmp(0).set,
      ...a.store('sg', [...a.load('sg'), ...a.tmp(0).get, ...add]),
      ...a.store('sgx', [...a.load('sgx'), ...a.tmp(0).get, ...a.load('x'), ...a.load('mean'), ...sub, ...mul, ...add]),
    ] },
  // dx = k*g - c1 - (x - mean)*c2
  { name: 'ginput', rowPtrs: ['dy', 'x', 'dx'], channelPtrs: ['mean', 'k', 'c1', 'c2'],
    body: (a) => a.store('dx', [
      ...a.load('k'), ...a.load('dy'), ...mul, ...a.load('c1'), ...sub,
      ...a.load('x'), ...a.load('mean'), ...sub, ...a.load('c2'), ...mul, ...sub,
    ]) },
  { name: 'ginputRelu', rowPtrs: ['dy', 'x', 'y', 'dx'], channelPtrs: ['mean', 'k', 'c1', 'c2'],
    body: (a) => a.store('dx', [
      ...a.load('k'), ...masked(a, 'dy', 'y'), ...mul, ...a.load('c1'), ...sub,
      ...a.load('x'), ...a.load('mean'), ...sub, ...a.load('c2'), ...mul, ...sub,
    ]) },
  { name: 'mask', rowPtrs: ['dy', 'y', 'out'], channelPtrs: [],
    body: (a) => a.store('out', masked(a, 'dy', 'y')) },
];

// --- strided copies (im2col) ---------------------------------------------------------------------

/** `for (counter = 0; counter < limit; counter++) body` */
function forCount(counter: number, limit: number, body: number[]): number[] {
  return [
    ...op.i32Const(0), ...op.set(counter),
    ...op.block, ...op.loop,
    ...op.get(counter), ...op.get(limit), ...op.i32GeU, ...op.brIf(1),
    ...body,
    ...op.get(counter), ...op.i32Const(1), ...op.i32Add, ...op.set(counter),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
}

/** p += step (locals) */
const bump = (p: number, step: number) => [...op.get(p), ...op.get(step), ...op.i32Add, ...op.set(p)];
/** p = base + counter * stride */
const at = (p: number, base: number, counter: number, stride: number) =>
  [...op.get(base), ...op.get(counter), ...op.get(stride), ...op.i32Mul, ...op.i32Add, ...op.set(p)];

/**
 * copyRuns(dst, src, outer, inner, lenBytes, dstInner, dstOuter, srcInner, srcOuter): for o < outer,
 * i < inner, copies lenBytes from src + o*srcOuter + i*srcInner to dst + o*dstOuter + i*dstInner.
 */
function copyRunsBody(): number[] {
  const [dst, src, outer, inner, len, dstInner, dstOuter, srcInner, srcOuter] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [o, i, d, s] = [9, 10, 11, 12];
  return [
    1, 4, I32,
    ...forCount(o, outer, [
      ...at(d, dst, o, dstOuter), ...at(s, src, o, srcOuter),
      ...forCount(i, inner, [
        ...op.get(d), ...op.get(s), ...op.get(len), ...op.memoryCopy,
        ...bump(d, dstInner), ...bump(s, srcInner),
      ]),
    ]),
    ...op.end,
  ];
}

/**
 * gatherRuns(dst, src, outer, inner, len, elemStride, dstInner, dstOuter, srcInner, srcOuter): as
 * copyRuns, but each run is `len` floats read `elemStride` bytes apart (a strided convolution's taps).
 */
function gatherRunsBody(): number[] {
  const [dst, src, outer, inner, len, elem, dstInner, dstOuter, srcInner, srcOuter] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const [o, i, e, d, s, dd, ss] = [10, 11, 12, 13, 14, 15, 16];
  const four = 17;
  return [
    1, 8, I32,
    ...op.i32Const(4), ...op.set(four),
    ...forCount(o, outer, [
      ...at(d, dst, o, dstOuter), ...at(s, src, o, srcOuter),
      ...forCount(i, inner, [
        ...op.get(d), ...op.set(dd), ...op.get(s), ...op.set(ss),
        ...forCount(e, len, [
          ...op.get(dd), ...op.get(ss), ...op.f32Load, ...op.f32Store,
          ...bump(dd, four), ...bump(ss, elem),
        ]),
        ...bump(d, dstInner), ...bump(s, srcInner),
      ]),
    ]),
    ...op.end,
  ];
}

/**
 * expInPlace(ptr, count): mem[ptr + 4i] = exp(mem[ptr + 4i]) for i < count (a multiple of 4; the
 * caller does any tail). Inputs below -87.3 give ~exp(-87.3) (~1e-38) rather than less; the
 * softmax that uses it (values <= 0, one of them 0 per row) cannot tell. exp(x) = 2^k * exp(r),
 * k = nearest(x / ln2), r = x - k ln2 (ln2 split in two for accuracy), exp(r) by its Taylor series
 * to r^7 in float32 (|r| <= ln2/2), 2^k built in the exponent bits.
 */
function expInPlaceBody(): number[] {
  const [ptr, count] = [0, 1];
  const [end, x, k] = [2, 3, 4];
  const LN2_HI = 0.693145751953125;
  const LN2_LO = 1.428606765330187e-6;
  const splat = (v: number) => [...op.f32Const(v), ...op.f32x4Splat];
  const horner = [1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5, 1, 1];
  // p = ((c0 * r + c1) * r + ...) with r in local x
  const poly = [
    ...splat(horner[0]),
    ...horner.slice(1).flatMap((c) => [...op.get(x), ...op.f32x4Mul, ...splat(c), ...op.f32x4Add]),
  ];
  return [
    2, 1, I32, 2, V128, // locals: end (i32); x, k (v128)
    ...op.get(ptr), ...op.get(count), ...op.i32Const(2), ...[0x74], ...op.i32Add, ...op.set(end), // end = ptr + 4*count
    ...op.block, ...op.loop,
    ...op.get(ptr), ...op.get(end), ...op.i32GeU, ...op.brIf(1),
    // x = max(mem, -87.3); k = nearest(x / ln2)
    ...op.get(ptr), ...op.v128Load(), ...splat(-87.3), ...op.f32x4Max, ...op.set(x),
    ...op.get(x), ...splat(1 / Math.LN2), ...op.f32x4Mul, ...op.f32x4Nearest, ...op.set(k),
    // r = x - k*LN2_HI - k*LN2_LO  (into x)
    ...op.get(x), ...op.get(k), ...splat(LN2_HI), ...op.f32x4Mul, ...op.f32x4Sub,
    ...op.get(k), ...splat(LN2_LO), ...op.f32x4Mul, ...op.f32x4Sub, ...op.set(x),
    // mem = poly(r) * bits((int(k) + 127) << 23)
    ...op.get(ptr),
    ...poly,
    ...op.get(k), ...op.i32x4TruncSatF32x4S, ...op.i32Const(127), ...op.i32x4Splat, ...op.i32x4Add,
    ...op.i32Const(23), ...op.i32x4Shl,
    ...op.f32x4Mul,
    ...op.v128Store(),
    ...op.get(ptr), ...op.i32Const(16), ...op.i32Add, ...op.set(ptr),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.end,
  ];
}

const RAW: { name: string; params: number; body: number[] }[] = [
  { name: 'expInPlace', params: 2, body: expInPlaceBody() },
  { name: 'copyRuns', params: 9, body: copyRunsBody() },
  { name: 'gatherRuns', params: 10, body: gatherRunsBody() },
];

function buildModule(): Uint8Array {
  const built = [...LOOPS.map(buildLoop), ...RAW];
  const names = [...LOOPS.map((l) => l.name), ...RAW.map((r) => r.name)];
  // One function type per parameter count (all parameters i32, no results).
  const counts = [...new Set(built.map((b) => b.params))];
  const types = counts.flatMap((n) => [0x60, ...uleb(n), ...new Array<number>(n).fill(I32), 0]);
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [...uleb(counts.length), ...types]),
    // import env.memory: unshared, 0 pages minimum, no maximum: accepts the backend's memory.
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 0]),
    ...section(3, [...uleb(built.length), ...built.map((b) => counts.indexOf(b.params))]),
    ...section(7, [...uleb(names.length), ...names.flatMap((n, i) => [...name(n), 0x00, ...uleb(i)])]),
    ...section(10, [...uleb(built.length), ...built.flatMap((b) => vec(b.body))]),
  ];
  return new Uint8Array(bytes);
}

export interface SimdLoops {
  sum(x: number, rows: number, rowBytes: number, acc: number): void;
  sqdev(x: number, rows: number, rowBytes: number, mean: number, acc: number): void;
  affine(x: number, y: number, rows: number, rowBytes: number, scale: number, shift: number): void;
  affineRelu(x: number, y: number, rows: number, rowBytes: number, scale: number, shift: number): void;
  affineRes(x: number, r: number, y: number, rows: number, rowBytes: number, scale: number, shift: number): void;
  affineResRelu(x: number, r: number, y: number, rows: number, rowBytes: number, scale: number, shift: number): void;
  gsums(dy: number, x: number, rows: number, rowBytes: number, mean: number, sg: number, sgx: number): void;
  gsumsRelu(dy: number, x: number, y: number, rows: number, rowBytes: number, mean: number, sg: number, sgx: number): void;
  ginput(dy: number, x: number, dx: number, rows: number, rowBytes: number, mean: number, k: number, c1: number,
         c2: number): void;
  ginputRelu(dy: number, x: number, y: number, dx: number, rows: number, rowBytes: number, mean: number, k: number,
             c1: number, c2: number): void;
  mask(dy: number, y: number, out: number, rows: number, rowBytes: number): void;
  expInPlace(ptr: number, count: number): void;
  copyRuns(dst: number, src: number, outer: number, inner: number, lenBytes: number, dstInner: number,
           dstOuter: number, srcInner: number, srcOuter: number): void;
  gatherRuns(dst: number, src: number, outer: number, inner: number, len: number, elemStrideBytes: number,
             dstInner: number, dstOuter: number, srcInner: number, srcOuter: number): void;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: unknown };
}

const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
let compiled: object | null | undefined;
const instances = new WeakMap<object, SimdLoops | null>();
let disabled = false;

/** Turns the SIMD loops off (true) so kernels take their JS loops; returns the previous setting. For tests. */
export function disableSimdLoops(off: boolean): boolean {
  const previous = disabled;
  disabled = off;
  return previous;
}

/**
 * The loops bound to this backend's memory, or null where they cannot run (no wasm SIMD in this
 * runtime, or a backend build that does not expose its memory): callers then use JS loops.
 */
export function simdLoops(backend: BackendWasm): SimdLoops | null {
  if (disabled || wasmApi === undefined) return null;
  const memory = (backend.wasm as unknown as { asm?: { memory?: object } }).asm?.memory;
  if (memory === undefined) return null;
  let loops = instances.get(memory);
  if (loops === undefined) {
    try {
      if (compiled === undefined) compiled = new wasmApi.Module(buildModule());
      loops = compiled === null ? null :
          new wasmApi.Instance(compiled, { env: { memory } }).exports as SimdLoops;
    } catch {
      compiled = null;
      loops = null;
    }
    instances.set(memory, loops);
  }
  return loops;
}
