import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { DataError } from '../src/data/data-error';
import { buildLabelMap, loadSample } from '../src/data/load-sample';
import { encodeIndexPng } from '../src/data/png-index';

const FIXTURES = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'data');
const W = 8;
const H = 6;
let dir = '';

function rgbImage(width: number, height: number): Uint8Array {
  const img = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) img.set([(i * 10) % 256, 100, 200], i * 3);
  return img;
}

function labelMap(width: number, height: number, f: (x: number, y: number) => number): Uint8Array {
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[y * width + x] = f(x, y);
  return out;
}

const p = (name: string): string => path.join(dir, name);
const opts = { numClasses: 5, ignoreIndex: 255 };

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'segdist-load-'));
  const raw = { raw: { width: W, height: H, channels: 3 as const } };
  await sharp(rgbImage(W, H), raw).png().toFile(p('img.png'));
  await sharp(rgbImage(W, H), raw).jpeg({ quality: 95 }).toFile(p('img.jpg'));
  await sharp(rgbImage(W, H), raw).ensureAlpha(0.5).png().toFile(p('rgba.png'));
  await sharp(labelMap(W, H, (x) => x % 3), { raw: { width: W, height: H, channels: 1 } }).toColourspace('b-w').jpeg().toFile(p('grey.jpg'));
  await writeFile(p('ok.png'), encodeIndexPng({ width: W, height: H, data: labelMap(W, H, (x, y) => (x === 0 ? 255 : (x + y) % 5)) }));
  await writeFile(p('small.png'), encodeIndexPng({ width: W - 1, height: H, data: new Uint8Array((W - 1) * H) }));
  await writeFile(p('bad.png'), encodeIndexPng({ width: W, height: H, data: labelMap(W, H, (x, y) => (x === 3 && y >= 2 ? 7 : 0)) }));
  await writeFile(p('camvid.png'), encodeIndexPng({ width: W, height: H, data: labelMap(W, H, (x) => (x < 4 ? 11 : 2)) }));
  const jpeg = await readFile(p('img.jpg'));
  await writeFile(p('truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  await writeFile(p('garbage.jpg'), Buffer.from('this is not an image'));
  // A 13x7 palette PNG and a 13x7 image to go with it.
  await copyFile(path.join(FIXTURES, 'palette8.png'), p('voc.png'));
  await sharp(rgbImage(13, 7), { raw: { width: 13, height: 7, channels: 3 } }).jpeg().toFile(p('voc.jpg'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('loads HWC RGB image and HW label; PNG, RGBA and grey images all come back as 3 channels', async () => {
  const s = await loadSample({ id: 'ok', image: p('img.png'), label: p('ok.png') }, opts);
  assert.deepEqual([s.height, s.width, s.image.length, s.label.length], [H, W, H * W * 3, H * W]);
  assert.deepEqual(s.image, rgbImage(W, H)); // lossless PNG: exact pixels
  assert.deepEqual(s.label, labelMap(W, H, (x, y) => (x === 0 ? 255 : (x + y) % 5)));

  const rgba = await loadSample({ id: 'rgba', image: p('rgba.png'), label: p('ok.png') }, opts);
  assert.equal(rgba.image.length, H * W * 3);
  const grey = await loadSample({ id: 'grey', image: p('grey.jpg'), label: p('ok.png') }, opts);
  assert.equal(grey.image.length, H * W * 3);
  assert.equal(grey.image[3 * 9], grey.image[3 * 9 + 1]); // grey stays grey: R == G
});

test('palette label keeps its indices', async () => {
  const s = await loadSample({ id: 'voc', image: p('voc.jpg'), label: p('voc.png') }, { numClasses: 21, ignoreIndex: 255 });
  assert.equal(s.label[0], 255);
  assert.equal(s.label[13 * 2 + 5], (5 * 7 + 2 * 11) % 21);
});

test('label size different from image size names both files', async () => {
  await assert.rejects(loadSample({ id: 'x', image: p('img.jpg'), label: p('small.png') }, opts), (err: Error) => {
    assert.ok(err instanceof DataError);
    assert.equal(err.file, p('small.png'));
    assert.match(err.message, /label is 7x6 but its image .*img\.jpg is 8x6/);
    return true;
  });
});

test('out-of-range label value names the file, value, first pixel and count', async () => {
  await assert.rejects(
    loadSample({ id: 'x', image: p('img.jpg'), label: p('bad.png') }, opts),
    (err: Error) => {
      assert.ok(err instanceof DataError);
      assert.equal(err.file, p('bad.png'));
      assert.match(err.message, /label value 7 at \(x=3, y=2\) is not a class index \(0\.\.4\) nor the ignore index 255; 4 pixel\(s\) out of range/);
      return true;
    },
  );
});

test('label map turns CamVid 11 (Unlabelled) into ignore; without it 11 is rejected', async () => {
  const ref = { id: 'c', image: p('img.jpg'), label: p('camvid.png') };
  await assert.rejects(loadSample(ref, { numClasses: 11, ignoreIndex: 255 }), /label value 11 at \(x=0, y=0\)/);
  const s = await loadSample(ref, { numClasses: 11, ignoreIndex: 255, labelMap: buildLabelMap({ 11: 255 }) });
  assert.deepEqual(s.label, labelMap(W, H, (x) => (x < 4 ? 255 : 2)));
  assert.throws(() => buildLabelMap({ 300: 1 }), /300 -> 1/);
});

test('corrupt or unreadable images are errors naming the image', async () => {
  for (const name of ['truncated.jpg', 'garbage.jpg', 'missing.jpg']) {
    await assert.rejects(loadSample({ id: 'x', image: p(name), label: p('ok.png') }, opts), (err: Error) => {
      assert.ok(err instanceof DataError, name);
      assert.equal(err.file, p(name));
      assert.match(err.message, /cannot decode image/);
      return true;
    });
  }
});
