// The values of a PyTorch tensor as float32, whatever it was saved as. Checkpoints come in F32, in
// half precision (F16, BF16) from mixed-precision training, in F64 from numpy round trips, and carry
// I64 counters (BN num_batches_tracked). segdist's weights are float32, so everything widens (or, for
// F64 and I64, rounds) to float32 here.
import type { RawTensor } from '../checkpoint/safetensors';

export const READABLE_DTYPES = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32'] as const;

/** IEEE half to float: exact (every half is a float32). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal (and zero)
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * Copies a stored tensor out as a Float32Array (the bytes need not be aligned, so views are never
 * taken). `where` names the file and key in the error for a dtype that holds no weights (U8, BOOL ...).
 */
export function toFloat32(t: RawTensor, where: string): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const b = t.bytes;
  switch (t.dtype) {
    case 'F32':
      // A byte copy: every platform Node runs on is little-endian, as safetensors is.
      Buffer.from(out.buffer).set(b);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(b.readUInt16LE(2 * i));
      return out;
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const word = new Uint32Array(1);
      const asFloat = new Float32Array(word.buffer);
      for (let i = 0; i < n; i++) {
        word[0] = b.readUInt16LE(2 * i) << 16;
        out[i] = asFloat[0];
      }
      return out;
    }
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = b.readDoubleLE(8 * i);
      return out;
    case 'I64':
      for (let i = 0; i < n; i++) out[i] = Number(b.readBigInt64LE(8 * i));
      return out;
    case 'I32':
      for (let i = 0; i < n; i++) out[i] = b.readInt32LE(4 * i);
      return out;
    default:
      throw new Error(`${where}: dtype ${t.dtype} cannot be imported as weights; readable: ${READABLE_DTYPES.join(', ')}`);
  }
}
