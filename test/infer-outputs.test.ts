// `segdist infer` with a checkpoint of the tiny synthetic set: per image a grey index mask, a palette
// colour mask and an overlay, all at the image's size, whatever its aspect ratio; the indices are the
// model's predictions (palette indices, not RGB); bad files are reported and skipped.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { loadCheckpoint } from '../src/checkpoint/checkpoint-manager';
import { readIndexPng } from '../src/data/png-index';
import { blendOverlay, fullPalette, inferImages, outputStems } from '../src/eval/infer-run';
import { predictClasses, testOptions } from '../src/eval/test-time';
import { checkConfig, resolveConfig } from '../src/config/load-config';
import { buildModel } from '../src/models/build-model';
import { SilentRunLogger } from '../src/train/run-logger';
import { train } from '../src/train/train-run';
import { loadModelState } from '../src/train/state-dict';
import { runCli, tempDir, tinyOverrides } from './helpers/tiny-run';

let dir: string;
let ckptDir: string;
let input: string;

before(async () => {
  dir = tempDir('infer');
  // lr 0: the initial weights with trained BN statistics, whose predictions vary more than a barely trained model's.
  await train(resolveConfig({ overrides: [...tinyOverrides(dir), 'train.epochs=1', 'optimizer.lr=0', 'schedule.min_lr=0', 'schedule.warmup_iters=0'] }), { logger: new SilentRunLogger() });
  ckptDir = path.join(dir, 'checkpoints', 'iter_0000004');
  input = path.join(dir, 'input');
  fs.mkdirSync(input);
  // Two dataset images, a wide and a tall one of odd sizes, a PNG with alpha, and two bad files.
  for (const f of fs.readdirSync(path.join(dir, 'data', 'images', 'val')).slice(0, 2)) fs.copyFileSync(path.join(dir, 'data', 'images', 'val', f), path.join(input, f));
  const noise = (w: number, h: number, channels: 3 | 4, seed: number) => {
    const data = Buffer.alloc(w * h * channels);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761 + seed * 97) % 251;
    return sharp(data, { raw: { width: w, height: h, channels } });
  };
  await noise(61, 9, 3, 1).png().toFile(path.join(input, 'wide.png'));
  await noise(7, 45, 3, 2).jpeg().toFile(path.join(input, 'tall.jpg'));
  await noise(20, 20, 4, 3).png().toFile(path.join(input, 'alpha.png'));
  fs.writeFileSync(path.join(input, 'broken.jpg'), Buffer.from('not a jpeg at all'));
  const jpeg = fs.readFileSync(path.join(input, 'tall.jpg'));
  fs.writeFileSync(path.join(input, 'truncated.jpg'), jpeg.subarray(0, jpeg.length >> 1));
  fs.writeFileSync(path.join(input, 'notes.txt'), 'not an image: ignored');
});

test('writes mask, palette colour mask and overlay per image at its size; bad files skipped', async () => {
  const out = path.join(dir, 'out');
  const r = await runCli(['infer', '--checkpoint', ckptDir, '--input', input, '--output', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: skipped .*broken\.jpg: cannot decode image/);
  assert.match(r.stderr, /warning: skipped .*truncated\.jpg: cannot decode image/);
  assert.match(r.stdout, /5 image\(s\) written to .*; 2 skipped:/);
  assert.match(r.stdout, /infer: 7\/7 images/); // plain progress lines: stdout is not a terminal here

  const ckpt = loadCheckpoint(ckptDir);
  const ds = ckpt.state.dataset;
  const cfg = checkConfig(ckpt.state.config, 'test');
  await tf.setBackend('cpu');
  const model = buildModel(cfg.model, ds.num_classes, cfg.seed);
  loadModelState(model, ckpt.model, ckptDir);
  const plte = fullPalette(ds.palette);
  const images = fs.readdirSync(input).filter((f) => !/broken|truncated|notes/.test(f));
  assert.equal(images.length, 5);
  const seen = new Set<number>();
  for (const f of images) {
    const stem = path.basename(f, path.extname(f));
    const { data: rgb, info } = await sharp(path.join(input, f)).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    const mask = await readIndexPng(path.join(out, 'mask', `${stem}.png`));
    const color = await readIndexPng(path.join(out, 'color', `${stem}.png`));
    assert.deepEqual([mask.width, mask.height, mask.colorType, mask.bitDepth], [info.width, info.height, 0, 8], f);
    assert.deepEqual([color.width, color.height, color.colorType], [info.width, info.height, 3], f);
    assert.deepEqual(color.data, mask.data, `${f}: the colour mask holds the same indices`);
    assert.deepEqual(Uint8Array.from(color.palette!.subarray(0, 3 * ds.num_classes)), Uint8Array.from(ds.palette.flat()));
    // The indices are the model's whole-image prediction of the normalised image.
    const norm = Float32Array.from(rgb, (v, i) => (v - ds.mean[i % 3]) * (1 / ds.std[i % 3]));
    const x = tf.tensor4d(norm, [1, info.height, info.width, 3]);
    const pred = await predictClasses(model, x, info.height, info.width, testOptions(cfg));
    x.dispose();
    assert.deepEqual(mask.data, Uint8Array.from(pred), `${f}: mask = prediction`);
    mask.data.forEach((v) => seen.add(v));
    // A viewer decoding the colour PNG sees the palette colours.
    const shown = await sharp(path.join(out, 'color', `${stem}.png`)).removeAlpha().raw().toBuffer();
    for (const i of [0, mask.data.length >> 1, mask.data.length - 1]) {
      assert.deepEqual([...shown.subarray(3 * i, 3 * i + 3)], [...plte.subarray(3 * mask.data[i], 3 * mask.data[i] + 3)], `${f} pixel ${i}`);
    }
    const overlay = await sharp(path.join(out, 'overlay', `${stem}.jpg`)).metadata();
    assert.deepEqual([overlay.width, overlay.height, overlay.format], [info.width, info.height, 'jpeg']);
  }
  assert.ok(seen.size >= 2, `the masks hold one class only (${[...seen]}): a weak check`);
  model.dispose();
});

test('slide and multiscale+flip modes, a single file, nothing readable', async () => {
  const out = path.join(dir, 'out-ms');
  const r = await runCli(['infer', '--checkpoint', ckptDir, '--input', path.join(input, 'wide.png'), '--output', out, '--mode', 'multiscale', '--flip', 'test.scales=[0.5,1.5]']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /multiscale \[0\.5, 1\.5\] \(windows 24x24 stride 16x16\), flip/);
  assert.deepEqual(fs.readdirSync(path.join(out, 'mask')), ['wide.png']);
  const m = await readIndexPng(path.join(out, 'mask', 'wide.png'));
  assert.deepEqual([m.width, m.height], [61, 9]);
  const slide = await inferImages({ checkpoint: ckptDir, input: path.join(input, 'tall.jpg'), output: path.join(dir, 'out-slide'), overrides: ['test.mode=slide', 'test.crop_size=[16,16]', 'backend=cpu'], log: () => {}, warn: () => {} });
  assert.deepEqual([slide.written, slide.skipped.length], [1, 0]);
  const bad = await runCli(['infer', '--checkpoint', ckptDir, '--input', path.join(input, 'broken.jpg'), '--output', path.join(dir, 'out-bad')]);
  assert.equal(bad.code, 3);
  const none = await runCli(['infer', '--checkpoint', ckptDir, '--input', path.join(dir, 'nowhere'), '--output', path.join(dir, 'out-none')]);
  assert.equal(none.code, 3);
  assert.match(none.stderr, /nowhere: input not found/);
});

test('output names, overlay blend', () => {
  assert.deepEqual(outputStems(['/a/x.jpg', '/a/y.png', '/a/x.png', '/b/z.tar.png']), ['x_jpg', 'y', 'x_png', 'z.tar']);
  const plte = fullPalette([[0, 0, 0], [255, 0, 0]]);
  assert.deepEqual([...plte.subarray(255 * 3)], [224, 224, 192]); // VOC's border colour at 255
  assert.deepEqual([...blendOverlay(Uint8Array.of(100, 100, 100, 10, 20, 30), Uint8Array.of(1, 0), plte)], [178, 50, 50, 5, 10, 15]);
});
