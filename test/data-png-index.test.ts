import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { DataError } from '../src/data/data-error';
import { decodeIndexPng, encodeIndexPng, readIndexPng } from '../src/data/png-index';

// Fixtures come from test/fixtures/data/make-png-fixtures.py; the formulas below repeat its values.
const FIXTURES = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'data');
const fixture = (name: string): string => path.join(FIXTURES, name);

function expected(width: number, height: number, f: (x: number, y: number) => number): Uint8Array {
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[y * width + x] = f(x, y);
  return out;
}

test('8-bit palette PNG keeps its indices and returns the palette', async () => {
  const png = await readIndexPng(fixture('palette8.png'));
  assert.equal(png.colorType, 3);
  assert.equal(png.bitDepth, 8);
  assert.deepEqual([png.width, png.height], [13, 7]);
  assert.deepEqual(png.data, expected(13, 7, (x, y) => (x === 0 ? 255 : (x * 7 + y * 11) % 21)));
  assert.ok(png.palette);
  assert.equal(png.palette.length, 256 * 3);
  // VOC colours: 1 is dark red, 255 (ignore) is the cream (224, 224, 192).
  assert.deepEqual([...png.palette.subarray(3, 6)], [128, 0, 0]);
  assert.deepEqual([...png.palette.subarray(765, 768)], [224, 224, 192]);
});

test('4-bit palette PNG with an odd width unpacks every nibble', async () => {
  const png = await readIndexPng(fixture('palette4.png'));
  assert.equal(png.bitDepth, 4);
  assert.deepEqual(png.data, expected(11, 5, (x, y) => (x + 2 * y) % 16));
  assert.equal(png.palette?.length, 16 * 3);
});

test('1-bit grey returns raw bits, 16-bit grey returns values that fit in 8 bits', async () => {
  const g1 = await readIndexPng(fixture('grey1.png'));
  assert.equal(g1.colorType, 0);
  assert.equal(g1.palette, undefined);
  assert.deepEqual(g1.data, expected(9, 4, (x, y) => (x + y) % 2));
  const g16 = await readIndexPng(fixture('grey16.png'));
  assert.deepEqual(g16.data, expected(6, 4, (x, y) => x * 40 + y));
});

test('16-bit value above 255 is an error naming the file and the pixel', async () => {
  await assert.rejects(readIndexPng(fixture('grey16-big.png')), (err: Error) => {
    assert.ok(err instanceof DataError);
    assert.match(err.message, /grey16-big\.png/);
    assert.match(err.message, /300 at \(x=2, y=1\)/);
    return true;
  });
});

test('RGB label PNG is rejected', async () => {
  await assert.rejects(readIndexPng(fixture('rgb.png')), /rgb\.png: label PNG is RGB/);
});

test('8-bit grey PNG written by sharp decodes to the same values', async () => {
  const data = expected(17, 9, (x, y) => (x * y) % 7);
  data[5] = 255;
  const buf = await sharp(data, { raw: { width: 17, height: 9, channels: 1 } }).toColourspace('b-w').png().toBuffer();
  const png = decodeIndexPng(buf, 'sharp.png');
  assert.equal(png.colorType, 0);
  assert.deepEqual(png.data, data);
});

test('encoder round-trips grey and palette images, and sharp agrees on the size', async () => {
  const data = expected(20, 3, (x, y) => (x + y) % 4);
  const grey = encodeIndexPng({ width: 20, height: 3, data });
  const back = decodeIndexPng(grey, 'grey');
  assert.equal(back.colorType, 0);
  assert.deepEqual(back.data, data);
  const meta = await sharp(grey).metadata();
  assert.deepEqual([meta.width, meta.height, meta.channels], [20, 3, 1]);

  const palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255];
  const pal = decodeIndexPng(encodeIndexPng({ width: 20, height: 3, data, palette }), 'pal');
  assert.equal(pal.colorType, 3);
  assert.deepEqual(pal.data, data);
  assert.deepEqual([...(pal.palette ?? [])], palette);
  // Deterministic bytes.
  assert.deepEqual(encodeIndexPng({ width: 20, height: 3, data }), grey);
  assert.throws(() => encodeIndexPng({ width: 20, height: 3, data, palette: [0, 0, 0] }), /index 1 at pixel 1 is outside the 1-entry palette/);
  assert.throws(() => encodeIndexPng({ width: 21, height: 3, data }), /expected 21\*3/);
});

test('corrupt CRC, truncation and bad signature are errors naming the file', async () => {
  const good = readFileSync(fixture('palette8.png'));
  // Flip one byte inside the IDAT payload: the CRC check must catch it before inflate does.
  const idat = good.indexOf('IDAT');
  const flipped = Buffer.from(good);
  flipped[idat + 10] ^= 0xff;
  assert.throws(() => decodeIndexPng(flipped, 'flipped.png'), /^DataError: flipped\.png: corrupt PNG: CRC mismatch in chunk IDAT/);
  assert.throws(() => decodeIndexPng(good.subarray(0, good.length - 20), 'cut.png'), /cut\.png: truncated PNG/);
  assert.throws(() => decodeIndexPng(good.subarray(0, idat - 4), 'noidat.png'), /noidat\.png: truncated PNG \(no IEND chunk\)/);
  assert.throws(() => decodeIndexPng(Buffer.from('GIF89a....'), 'x.gif'), /x\.gif: not a PNG file/);

  // A valid CRC over garbage image data: the inflate failure is reported as corruption.
  const bogusIdat = Buffer.concat([
    good.subarray(0, good.indexOf('tEXt') - 4),
    encodeChunk('IDAT', Buffer.from([1, 2, 3, 4, 5])),
    encodeChunk('IEND', Buffer.alloc(0)),
  ]);
  assert.throws(() => decodeIndexPng(bogusIdat, 'bogus.png'), /bogus\.png: corrupt PNG: image data does not decompress/);

  const dir = await mkdtemp(path.join(os.tmpdir(), 'segdist-png-'));
  try {
    const file = path.join(dir, 'flipped.png');
    await writeFile(file, flipped);
    await assert.rejects(readIndexPng(file), (err: Error) => err instanceof DataError && err.file === file);
    await assert.rejects(readIndexPng(path.join(dir, 'missing.png')), /missing\.png: cannot read label file/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** A chunk with a correct CRC, built with zlib's crc32 so the test does not lean on the decoder's own. */
function encodeChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
  return out;
}
