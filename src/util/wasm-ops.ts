// The handful of WebAssembly instructions the hand-assembled SIMD modules of src/backend, src/cluster
// and src/data are written in (no toolchain at build time), and the section encoders they share.

import { sleb, uleb } from './leb128';

/** Value types. */
export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;

const simd = (code: number) => [0xfd, ...uleb(code)];

export const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  br: (depth: number) => [0x0c, depth],
  brIf: (depth: number) => [0x0d, depth],
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32Const: (v: number) => [0x41, ...sleb(v)],
  i32Add: [0x6a],
  i32Mul: [0x6c],
  i32And: [0x71],
  i32Shl: [0x74],
  i32LtU: [0x49],
  i32GeU: [0x4f],
  f32Const: (v: number) => [0x43, ...new Uint8Array(new Float32Array([v]).buffer)],
  f32Load: [0x2a, 2, 0], // align 2^2, offset 0
  f32Store: [0x38, 2, 0],
  f32Add: [0x92],
  f32Div: [0x95],
  memoryCopy: [0xfc, 10, 0, 0],
  /** Alignment 2^4 is a hint only; `offset` is added to the address operand. */
  v128Load: (offset = 0) => [...simd(0x00), 4, ...uleb(offset)],
  v128Store: (offset = 0) => [...simd(0x0b), 4, ...uleb(offset)],
  v128Zero: [...simd(0x0c), ...new Array<number>(16).fill(0)],
  v128And: simd(0x4e),
  f32x4Gt: simd(0x44),
  f32x4Max: simd(0xe9),
  f32x4Nearest: simd(0x6a),
  f32x4Splat: simd(0x13),
  f32x4Add: simd(0xe4),
  f32x4Sub: simd(0xe5),
  f32x4Mul: simd(0xe6),
  f32x4Div: simd(0xe7),
  i32x4TruncSatF32x4S: simd(0xf8),
  i32x4Add: simd(0xae),
  i32x4Shl: simd(0xab),
  i32x4Splat: simd(0x11),
};

/** A length-prefixed byte vector. */
export const vec = (bytes: number[]): number[] => [...uleb(bytes.length), ...bytes];
/** A name (export names). */
export const wasmName = (s: string): number[] => vec([...Buffer.from(s, 'ascii')]);
/** A module section: id, then its bytes as a vector. */
export const section = (id: number, bytes: number[]): number[] => [id, ...vec(bytes)];
