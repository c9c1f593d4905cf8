import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { readIndexPng } from '../src/data/png-index';
import { synthesizeDataset, SynthDatasetOptions } from '../src/data/synth-dataset';

let tmp = '';
const base: Omit<SynthDatasetOptions, 'out'> = { classes: 4, count: { train: 4, val: 2 }, size: [32, 40], seed: 7 };

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'segdist-synth-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function filesUnder(root: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const rel of await readdir(root, { recursive: true })) {
    const full = path.join(root, rel);
    if ((await stat(full)).isFile()) out.set(rel, await readFile(full));
  }
  return out;
}

test('writes the folder layout, list files and dataset.json', async () => {
  const out = path.join(tmp, 'a');
  const summary = await synthesizeDataset({ ...base, out });
  assert.deepEqual(summary.splits, { train: 4, val: 2 });
  assert.equal(summary.files, 6 * 2 + 2 + 1);
  const files = await filesUnder(out);
  assert.deepEqual(
    [...files.keys()].sort(),
    [
      'dataset.json',
      'images/train/train_0000.jpg',
      'images/train/train_0001.jpg',
      'images/train/train_0002.jpg',
      'images/train/train_0003.jpg',
      'images/val/val_0000.jpg',
      'images/val/val_0001.jpg',
      'labels/train/train_0000.png',
      'labels/train/train_0001.png',
      'labels/train/train_0002.png',
      'labels/train/train_0003.png',
      'labels/val/val_0000.png',
      'labels/val/val_0001.png',
      'train.txt',
      'val.txt',
    ],
  );
  assert.equal(files.get('val.txt')?.toString(), 'val_0000\nval_0001\n');
  const meta = JSON.parse(files.get('dataset.json')?.toString() ?? '');
  assert.equal(meta.num_classes, 4);
  assert.equal(meta.ignore_index, 255);
  assert.deepEqual(meta.class_names, ['class0', 'class1', 'class2', 'class3']);
  assert.equal(meta.palette.length, 4);

  const img = await sharp(path.join(out, 'images/train/train_0000.jpg')).metadata();
  assert.deepEqual([img.format, img.width, img.height, img.channels], ['jpeg', 40, 32, 3]);
});

test('labels are 1-channel 8-bit, the image size, classes in range, some ignore pixels', async () => {
  const out = path.join(tmp, 'a');
  const seen = new Set<number>();
  for (const split of ['train', 'val']) {
    for (const stem of (await readFile(path.join(out, `${split}.txt`), 'utf8')).trim().split('\n')) {
      const file = path.join(out, 'labels', split, `${stem}.png`);
      const png = await readIndexPng(file);
      assert.deepEqual([png.colorType, png.bitDepth, png.width, png.height], [0, 8, 40, 32], file);
      const meta = await sharp(file).metadata();
      assert.equal(meta.channels, 1, file);
      for (const v of png.data) {
        assert.ok(v < 4 || v === 255, `${file}: value ${v}`);
        seen.add(v);
      }
    }
  }
  assert.ok(seen.has(0) && seen.has(255), `values seen: ${[...seen]}`);
  assert.ok([1, 2, 3].some((c) => seen.has(c)));
});

test('same seed gives byte-identical files; another seed does not', async () => {
  const a = await filesUnder(path.join(tmp, 'a'));
  const b = path.join(tmp, 'b');
  await synthesizeDataset({ ...base, out: b, concurrency: 1 });
  const bFiles = await filesUnder(b);
  assert.deepEqual([...bFiles.keys()].sort(), [...a.keys()].sort());
  for (const [rel, bytes] of a) assert.ok(bytes.equals(bFiles.get(rel) as Buffer), rel);

  const cOut = path.join(tmp, 'c');
  await synthesizeDataset({ ...base, out: cOut, seed: 8 });
  const c = await filesUnder(cOut);
  assert.ok(!(c.get('labels/train/train_0000.png') as Buffer).equals(a.get('labels/train/train_0000.png') as Buffer));
});

test('classes are told apart by colour: each class keeps its own hue, background stays unsaturated', async () => {
  const out = path.join(tmp, 'hue');
  await synthesizeDataset({ out, classes: 5, count: { train: 8 }, size: [48, 48], seed: 3, ignoreBorder: 2 });
  const sums = Array.from({ length: 5 }, () => ({ r: 0, g: 0, b: 0, sat: 0, n: 0 }));
  for (let i = 0; i < 8; i++) {
    const stem = `train_000${i}`;
    const { data } = await sharp(path.join(out, 'images/train', `${stem}.jpg`)).raw().toBuffer({ resolveWithObject: true });
    const label = (await readIndexPng(path.join(out, 'labels/train', `${stem}.png`))).data;
    label.forEach((c, p) => {
      if (c === 255) return;
      const [r, g, b] = [data[3 * p], data[3 * p + 1], data[3 * p + 2]];
      const s = sums[c];
      s.r += r;
      s.g += g;
      s.b += b;
      s.sat += (Math.max(r, g, b) - Math.min(r, g, b)) / Math.max(1, Math.max(r, g, b));
      s.n++;
    });
  }
  assert.ok(sums[0].sat / sums[0].n < 0.25, `background saturation ${sums[0].sat / sums[0].n}`);
  const hues = sums.slice(1).map((s) => {
    assert.ok(s.n > 0, 'every class appears in 8 images');
    assert.ok(s.sat / s.n > 0.45, `class saturation ${s.sat / s.n}`);
    return hueOf(s.r / s.n, s.g / s.n, s.b / s.n);
  });
  // Classes 1..4 sit a quarter turn apart on the colour wheel.
  for (let i = 0; i < hues.length; i++) {
    for (let j = i + 1; j < hues.length; j++) {
      const d = Math.abs(hues[i] - hues[j]);
      assert.ok(Math.min(d, 1 - d) > 0.15, `classes ${i + 1} and ${j + 1}: hues ${hues[i]} ${hues[j]}`);
    }
  }
});

function hueOf(r: number, g: number, b: number): number {
  const max = Math.max(r, g, b);
  const d = max - Math.min(r, g, b);
  if (d === 0) return 0;
  const h = max === r ? (g - b) / d : max === g ? 2 + (b - r) / d : 4 + (r - g) / d;
  return ((h / 6) % 1 + 1) % 1;
}

test('bad options are rejected', async () => {
  await assert.rejects(synthesizeDataset({ ...base, out: path.join(tmp, 'x'), classes: 1 }), /classes must be an integer in 2\.\.255/);
  await assert.rejects(synthesizeDataset({ ...base, out: path.join(tmp, 'x'), size: [8, 40] }), /size must be two integers >= 16/);
  await assert.rejects(synthesizeDataset({ ...base, out: path.join(tmp, 'x'), count: { train: 0 } }), /count for split "train"/);
});
