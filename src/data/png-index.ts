// A PNG reader and writer for label maps that works on the stored samples themselves.
//
// Why not sharp: libvips converts what it decodes to an interpretation it understands, so a palette
// PNG (the Pascal VOC SegmentationClass format) comes back as RGB colours and its class indices are
// gone. Here the stored samples are the result: 8-bit grey values and palette indices are returned
// exactly as written.
//
// Supported: colour type 0 (grey) at bit depths 1, 2, 4, 8 and 16, colour type 3 (palette) at 1, 2,
// 4 and 8. Sub-byte depths return the raw value (a 1-bit mask gives 0/1, not 0/255): for labels the
// stored number is the class. 16-bit grey is accepted only when every value fits in 8 bits; anything
// larger cannot be a class index in a pipeline whose ignore index is 255, so it is an error rather
// than a silent truncation. RGB/RGBA/grey+alpha label images are rejected: colour-coded masks must be
// converted to indices first. Interlaced (Adam7) files are rejected; no label set we target uses them.

import { readFile } from 'node:fs/promises';
import { deflateSync, inflate, inflateSync } from 'node:zlib';
import { promisify } from 'node:util';
import { DataError, messageOf } from './data-error';

const inflateAsync = promisify(inflate);

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

export interface IndexPng {
  width: number;
  height: number;
  /** Row-major H*W indices, one byte per pixel whatever the stored bit depth. */
  data: Uint8Array;
  /** 0 (grey) or 3 (palette). */
  colorType: 0 | 3;
  bitDepth: number;
  /** RGB triplets from the PLTE chunk (length 3 * entries), when the file has one. */
  palette?: Uint8Array;
}

interface Header {
  width: number;
  height: number;
  bitDepth: number;
  colorType: 0 | 3;
}

interface Parsed {
  header: Header;
  compressed: Buffer;
  palette?: Uint8Array;
}

// --- CRC-32 (ISO-HDLC), table-driven. zlib.crc32 exists only from Node 20.15; engines allow 20.9.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array, start: number, end: number): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunkTypeName(buf: Uint8Array, at: number): string {
  return String.fromCharCode(buf[at], buf[at + 1], buf[at + 2], buf[at + 3]);
}

/** Walks the chunk list, checking every CRC, and collects IHDR, PLTE and the IDAT stream. */
function parseChunks(buf: Uint8Array, file: string): Parsed {
  if (buf.length < 8 || !SIGNATURE.every((b, i) => buf[i] === b)) {
    throw new DataError(file, 'not a PNG file (bad signature)');
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let header: Header | undefined;
  let palette: Uint8Array | undefined;
  const idat: Buffer[] = [];
  let sawEnd = false;
  let pos = 8;
  while (pos < buf.length) {
    if (pos + 12 > buf.length) throw new DataError(file, `truncated PNG (chunk header at byte ${pos} cut off)`);
    const length = view.getUint32(pos);
    const type = chunkTypeName(buf, pos + 4);
    const dataStart = pos + 8;
    const dataEnd = dataStart + length;
    if (length > 0x7fffffff || dataEnd + 4 > buf.length) {
      throw new DataError(file, `truncated PNG (chunk ${type} at byte ${pos} needs ${length} bytes)`);
    }
    const stored = view.getUint32(dataEnd);
    const actual = crc32(buf, pos + 4, dataEnd);
    if (stored !== actual) {
      throw new DataError(file, `corrupt PNG: CRC mismatch in chunk ${type} at byte ${pos}`);
    }
    if (header === undefined && type !== 'IHDR') throw new DataError(file, `corrupt PNG: first chunk is ${type}, not IHDR`);
    switch (type) {
      case 'IHDR':
        if (header !== undefined) throw new DataError(file, 'corrupt PNG: second IHDR chunk');
        header = parseHeader(view, dataStart, length, file);
        break;
      case 'PLTE':
        if (length % 3 !== 0 || length === 0 || length > 768) {
          throw new DataError(file, `corrupt PNG: PLTE length ${length} is not 3..768 and a multiple of 3`);
        }
        palette = buf.slice(dataStart, dataEnd);
        break;
      case 'IDAT':
        idat.push(Buffer.from(buf.buffer, buf.byteOffset + dataStart, length));
        break;
      case 'IEND':
        sawEnd = true;
        break;
      default:
        // Bit 5 of the first byte clear marks a critical chunk: one we do not know cannot be skipped.
        if ((buf[pos + 4] & 0x20) === 0) throw new DataError(file, `unsupported critical PNG chunk ${type}`);
    }
    pos = dataEnd + 4;
    if (sawEnd) break;
  }
  if (!sawEnd) throw new DataError(file, 'truncated PNG (no IEND chunk)');
  if (header === undefined) throw new DataError(file, 'corrupt PNG: no IHDR chunk');
  if (idat.length === 0) throw new DataError(file, 'corrupt PNG: no IDAT chunk');
  if (header.colorType === 3 && palette === undefined) throw new DataError(file, 'corrupt PNG: palette image without PLTE chunk');
  return { header, compressed: Buffer.concat(idat), palette };
}

const COLOR_TYPE_NAMES: Record<number, string> = { 2: 'RGB', 4: 'grey+alpha', 6: 'RGBA' };

function parseHeader(view: DataView, at: number, length: number, file: string): Header {
  if (length !== 13) throw new DataError(file, `corrupt PNG: IHDR length ${length}, expected 13`);
  const width = view.getUint32(at);
  const height = view.getUint32(at + 4);
  const bitDepth = view.getUint8(at + 8);
  const colorType = view.getUint8(at + 9);
  const compression = view.getUint8(at + 10);
  const filter = view.getUint8(at + 11);
  const interlace = view.getUint8(at + 12);
  if (width === 0 || height === 0) throw new DataError(file, `corrupt PNG: size ${width}x${height}`);
  if (colorType !== 0 && colorType !== 3) {
    const name = COLOR_TYPE_NAMES[colorType] ?? `colour type ${colorType}`;
    throw new DataError(
      file,
      `label PNG is ${name}; expected single-channel class indices (8-bit grey or palette). ` +
        'Convert colour-coded masks to index maps first.',
    );
  }
  const allowed = colorType === 0 ? [1, 2, 4, 8, 16] : [1, 2, 4, 8];
  if (!allowed.includes(bitDepth)) {
    throw new DataError(file, `corrupt PNG: bit depth ${bitDepth} is not valid for colour type ${colorType}`);
  }
  if (compression !== 0 || filter !== 0) throw new DataError(file, 'corrupt PNG: unknown compression or filter method');
  if (interlace !== 0) throw new DataError(file, 'interlaced (Adam7) PNG labels are not supported; re-save without interlacing');
  return { width, height, bitDepth, colorType };
}

function rowBytes(h: Header): number {
  return Math.ceil((h.width * h.bitDepth) / 8);
}

function expectedRawLength(h: Header): number {
  return h.height * (rowBytes(h) + 1);
}

/** Reverses the per-row filters in place over `raw` and unpacks samples to one byte per pixel. */
function unfilterAndUnpack(parsed: Parsed, raw: Uint8Array, file: string): IndexPng {
  const h = parsed.header;
  const stride = rowBytes(h);
  if (raw.length !== expectedRawLength(h)) {
    throw new DataError(file, `corrupt PNG: image data is ${raw.length} bytes, expected ${expectedRawLength(h)}`);
  }
  // Filters work on bytes, looking back one whole pixel (at least one byte).
  const bpp = Math.max(1, h.bitDepth / 8);
  const out = new Uint8Array(h.width * h.height);
  const zeroRow = new Uint8Array(stride);
  for (let y = 0; y < h.height; y++) {
    const start = y * (stride + 1) + 1;
    const filter = raw[start - 1];
    const cur = raw.subarray(start, start + stride);
    const prev = y === 0 ? zeroRow : raw.subarray(start - stride - 1, start - 1);
    switch (filter) {
      case 0:
        break;
      case 1:
        for (let i = bpp; i < stride; i++) cur[i] = (cur[i] + cur[i - bpp]) & 0xff;
        break;
      case 2:
        for (let i = 0; i < stride; i++) cur[i] = (cur[i] + prev[i]) & 0xff;
        break;
      case 3:
        for (let i = 0; i < stride; i++) {
          const left = i >= bpp ? cur[i - bpp] : 0;
          cur[i] = (cur[i] + ((left + prev[i]) >>> 1)) & 0xff;
        }
        break;
      case 4:
        // The first bpp bytes have no left neighbour (a = c = 0): Paeth picks b.
        for (let i = 0; i < bpp && i < stride; i++) cur[i] = (cur[i] + prev[i]) & 0xff;
        for (let i = bpp; i < stride; i++) {
          const a = cur[i - bpp];
          const b = prev[i];
          const c = prev[i - bpp];
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          const pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          cur[i] = (cur[i] + pred) & 0xff;
        }
        break;
      default:
        throw new DataError(file, `corrupt PNG: unknown filter type ${filter} on row ${y}`);
    }
    unpackRow(cur, out, y, h, file);
  }
  const result: IndexPng = { width: h.width, height: h.height, data: out, colorType: h.colorType, bitDepth: h.bitDepth };
  if (parsed.palette !== undefined) result.palette = parsed.palette;
  return result;
}

function unpackRow(row: Uint8Array, out: Uint8Array, y: number, h: Header, file: string): void {
  const base = y * h.width;
  switch (h.bitDepth) {
    case 8:
      out.set(row.subarray(0, h.width), base);
      return;
    case 16:
      for (let x = 0; x < h.width; x++) {
        const v = (row[2 * x] << 8) | row[2 * x + 1];
        if (v > 255) {
          throw new DataError(file, `16-bit label value ${v} at (x=${x}, y=${y}) does not fit in 8 bits; class indices must be 0..255`);
        }
        out[base + x] = v;
      }
      return;
    default: {
      const depth = h.bitDepth;
      const perByte = 8 / depth;
      const mask = (1 << depth) - 1;
      for (let x = 0; x < h.width; x++) {
        const byte = row[Math.floor(x / perByte)];
        const shift = 8 - depth * ((x % perByte) + 1);
        out[base + x] = (byte >>> shift) & mask;
      }
    }
  }
}

function inflateError(file: string, err: unknown): DataError {
  return new DataError(file, `corrupt PNG: image data does not decompress (${messageOf(err)})`, { cause: err });
}

/** Decodes an index PNG held in memory. `file` only names the source in errors. */
export function decodeIndexPng(bytes: Uint8Array, file: string): IndexPng {
  const parsed = parseChunks(bytes, file);
  let raw: Buffer;
  try {
    // One byte over the expected size is enough to detect surplus data without inflating a bomb.
    raw = inflateSync(parsed.compressed, { maxOutputLength: expectedRawLength(parsed.header) + 1 });
  } catch (err) {
    throw inflateError(file, err);
  }
  return unfilterAndUnpack(parsed, raw, file);
}

/**
 * Label maps up to this many decompressed bytes are inflated on the calling thread: for a CamVid
 * label (173 kB) the round trip through the libuv pool costs more than the inflation (~0.5 ms).
 * Larger ones (a 2048x1024 Cityscapes map is 2 MB) go to the pool, off the calling thread.
 */
const SYNC_INFLATE_LIMIT = 1 << 20;

/** Reads and decodes an index PNG. */
export async function readIndexPng(file: string): Promise<IndexPng> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new DataError(file, `cannot read label file (${messageOf(err)})`, { cause: err });
  }
  const parsed = parseChunks(bytes, file);
  const limit = expectedRawLength(parsed.header) + 1;
  let raw: Buffer;
  try {
    raw = limit <= SYNC_INFLATE_LIMIT ? inflateSync(parsed.compressed, { maxOutputLength: limit }) : await inflateAsync(parsed.compressed, { maxOutputLength: limit });
  } catch (err) {
    throw inflateError(file, err);
  }
  return unfilterAndUnpack(parsed, raw, file);
}

export interface EncodeIndexPngInput {
  width: number;
  height: number;
  /** Row-major H*W indices. */
  data: Uint8Array;
  /** RGB triplets (1..256 entries). When given the file is a palette PNG (colour type 3), else 8-bit grey. */
  palette?: ArrayLike<number>;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out, 4, 8 + data.length), 8 + data.length);
  return out;
}

/**
 * Encodes an 8-bit single-channel index PNG (grey, or palette when `palette` is given). Rows are
 * stored unfiltered: label maps are long runs that deflate compresses well as they are, and the
 * output is a pure function of the input (byte-identical for identical masks).
 */
export function encodeIndexPng(img: EncodeIndexPngInput): Buffer {
  const { width, height, data, palette } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`encodeIndexPng: invalid size ${width}x${height}`);
  }
  if (data.length !== width * height) {
    throw new Error(`encodeIndexPng: data has ${data.length} values, expected ${width}*${height}=${width * height}`);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = palette === undefined ? 0 : 3;
  const parts: Buffer[] = [Buffer.from(SIGNATURE), chunk('IHDR', ihdr)];
  if (palette !== undefined) {
    if (palette.length === 0 || palette.length % 3 !== 0 || palette.length > 768) {
      throw new Error(`encodeIndexPng: palette length ${palette.length} is not 3..768 and a multiple of 3`);
    }
    const entries = palette.length / 3;
    for (let i = 0; i < data.length; i++) {
      if (data[i] >= entries) {
        throw new Error(`encodeIndexPng: index ${data[i]} at pixel ${i} is outside the ${entries}-entry palette`);
      }
    }
    parts.push(chunk('PLTE', Uint8Array.from(palette)));
  }
  const raw = Buffer.alloc(height * (width + 1));
  for (let y = 0; y < height; y++) raw.set(data.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  parts.push(chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', new Uint8Array(0)));
  return Buffer.concat(parts);
}
