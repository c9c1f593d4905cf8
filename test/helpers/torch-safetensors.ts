// Writes safetensors files as PyTorch would save a state_dict: conv weights OIHW, any prefix, and the
// dtypes segdist's own writer never produces (F16, BF16, I64), so the import path reads real layouts.
import * as fs from 'node:fs';
import type { Module } from '../../src/models/module';

export interface TorchEntry {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16' | 'I64';
  shape: number[];
  /** Values; for F16/BF16 they must be exactly representable (the test compares exactly). */
  values: ArrayLike<number>;
}

function floatToHalf(v: number): number {
  // Exact values only: the tests pass small multiples of powers of two.
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const exp = Math.floor(Math.log2(a));
  const frac = a / 2 ** exp - 1;
  const bits = Math.round(frac * 1024);
  if (exp < -14 || exp > 15 || bits !== frac * 1024) throw new Error(`floatToHalf: ${v} is not an exact normal half`);
  return sign | ((exp + 15) << 10) | bits;
}

function bytesOf(e: TorchEntry): Buffer {
  const n = e.values.length;
  switch (e.dtype) {
    case 'F32':
      return Buffer.from(Float32Array.from(e.values).buffer);
    case 'F16': {
      const b = Buffer.alloc(2 * n);
      for (let i = 0; i < n; i++) b.writeUInt16LE(floatToHalf(e.values[i]), 2 * i);
      return b;
    }
    case 'BF16': {
      const f = Float32Array.from(e.values);
      const u = new Uint32Array(f.buffer);
      const b = Buffer.alloc(2 * n);
      for (let i = 0; i < n; i++) {
        if ((u[i] & 0xffff) !== 0) throw new Error(`BF16: ${f[i]} is not exactly representable`);
        b.writeUInt16LE(u[i] >>> 16, 2 * i);
      }
      return b;
    }
    case 'I64': {
      const b = Buffer.alloc(8 * n);
      for (let i = 0; i < n; i++) b.writeBigInt64LE(BigInt(e.values[i]), 8 * i);
      return b;
    }
  }
}

export function writeTorchSafetensors(file: string, entries: TorchEntry[]): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const b = bytesOf(e);
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + b.length] };
    chunks.push(b);
    offset += b.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, ...chunks]));
}

/** HWIO [kh, kw, in, out] row-major -> OIHW; other ranks unchanged. Written independently of src/weights. */
export function hwioToOihw(data: Float32Array, shape: readonly number[]): { data: Float32Array; shape: number[] } {
  if (shape.length !== 4) return { data: data.slice(), shape: shape.slice() };
  const [kh, kw, ci, co] = shape;
  const out = new Float32Array(data.length);
  for (let h = 0; h < kh; h++) for (let w = 0; w < kw; w++) for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) {
    out[((o * ci + i) * kh + h) * kw + w] = data[((h * kw + w) * ci + i) * co + o];
  }
  return { data: out, shape: [co, ci, kh, kw] };
}

/** Every parameter and buffer of a model as PyTorch would save it (OIHW, F32), under prefix + name. */
export function torchEntriesOf(model: Module, prefix: string): TorchEntry[] {
  return [...model.namedParameters(), ...model.namedBuffers()].map(([name, v]) => {
    const t = hwioToOihw(v.dataSync() as Float32Array, v.shape);
    return { name: prefix + name, dtype: 'F32' as const, shape: t.shape, values: t.data };
  });
}
