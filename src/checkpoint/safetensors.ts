// The safetensors format (an 8-byte little-endian header length, a JSON header, then raw data), so
// weights move between segdist and PyTorch (safetensors.torch) without pickle.
import * as fs from 'node:fs';

export type DType = 'F32' | 'I32' | 'F64';
export type TypedData = Float32Array | Int32Array | Float64Array;

export interface NamedArray {
  dtype: DType;
  shape: number[];
  data: TypedData;
}

const BYTES: Record<DType, number> = { F32: 4, I32: 4, F64: 8 };
const CTORS = { F32: Float32Array, I32: Int32Array, F64: Float64Array } as const;

export function dtypeOf(data: TypedData): DType {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Int32Array) return 'I32';
  return 'F64';
}

export function encodeSafetensors(tensors: Map<string, NamedArray>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`safetensors: ${name} has shape [${t.shape}] but ${t.data.length} values`);
    const bytes = count * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad the header so the data starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let pos = 8 + headerBytes.length;
  for (const t of tensors.values()) {
    const src = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    src.copy(out, pos);
    pos += src.length;
  }
  return out;
}

/** Bytes per element of every safetensors dtype, so a file's header can be checked whatever it holds. */
const ELEMENT_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

/** One tensor of a file as stored: its dtype, shape and a view of its little-endian bytes. */
export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

/**
 * Parses the header and checks every entry against the file, without converting any data. Readers
 * that accept more dtypes than segdist's own files hold (PyTorch's F16, BF16, I64 ...) start here.
 */
export function decodeSafetensorsRaw(buf: Buffer, source: string): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  const bad = (why: string) => new Error(`${source}: not a valid safetensors file: ${why}`);
  if (buf.length < 8) throw bad(`${buf.length} bytes is too short for a header`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen > buf.length - 8) throw bad(`header length ${headerLen} exceeds the file (${buf.length} bytes; truncated?)`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  } catch (e) {
    throw bad(`header is not JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLen;
  const tensors = new Map<string, RawTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const size = ELEMENT_BYTES[e.dtype];
    if (size === undefined) throw bad(`tensor ${name} has unknown dtype ${e.dtype}`);
    const [begin, end] = e.data_offsets;
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * size || dataStart + end > buf.length) {
      throw bad(`tensor ${name} has offsets [${begin}, ${end}] that do not fit its shape [${e.shape}] or the file (truncated?)`);
    }
    tensors.set(name, { dtype: e.dtype, shape: e.shape, bytes: buf.subarray(dataStart + begin, dataStart + end) });
  }
  return { tensors, metadata };
}

export function decodeSafetensors(buf: Buffer, source: string): { tensors: Map<string, NamedArray>; metadata: Record<string, string> } {
  const raw = decodeSafetensorsRaw(buf, source);
  const tensors = new Map<string, NamedArray>();
  for (const [name, t] of raw.tensors) {
    if (!(t.dtype in CTORS)) throw new Error(`${source}: not a valid safetensors file: tensor ${name} has dtype ${t.dtype}; segdist reads F32, F64 and I32`);
    const dtype = t.dtype as DType;
    // Copy out: the file's data need not be aligned for a typed-array view.
    const data = new CTORS[dtype](t.bytes.length / BYTES[dtype]);
    Buffer.from(data.buffer).set(t.bytes);
    tensors.set(name, { dtype, shape: t.shape, data });
  }
  return { tensors, metadata: raw.metadata };
}

export function readSafetensors(file: string): { tensors: Map<string, NamedArray>; metadata: Record<string, string> } {
  return decodeSafetensors(readFileOrExplain(file), file);
}

export function readSafetensorsRaw(file: string): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  return decodeSafetensorsRaw(readFileOrExplain(file), file);
}

function readFileOrExplain(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (e as Error).message}`);
  }
}
