// npm run bench:data-ops — why augmentation geometry is JS (+ WebAssembly SIMD) and not libvips:
//   1. agreement with OpenCV on the committed goldens (test/fixtures/data/opencv, real CamVid crops):
//      our kernels, sharp's resize (kernel 'linear'), sharp's affine (bilinear interpolator, offsets
//      set for half-pixel centres) and sharp's rotate;
//   2. CPU time per sample of the PSPNet transforms at 256x256 crops on real frames: segdist's
//      pipeline (crop-region rendering) beside the same ops as a chain of whole-image sharp
//      pipelines (libvips computes each op over the whole intermediate image; two geometric ops
//      cannot share one sharp pipeline).
// Not a test. node dist/bench/data-ops.js [--root ../shared/datasets/camvid] [--frames 40]

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { compileTransforms, ResizeStep, RotateStep } from '../src/data/augment';
import { checkTransforms } from '../src/data/augment-spec';
import { readFolderSplit } from '../src/data/folder-dataset';
import { buildLabelMap, loadSample } from '../src/data/load-sample';
import { Rng } from '../src/util/rng';
import { PSPNET_TRANSFORMS } from './data-presets';

const REPO = path.resolve(__dirname, '..', '..');
const GOLDEN = path.join(REPO, 'test', 'fixtures', 'data', 'opencv');

interface Raw {
  data: Uint8Array;
  height: number;
  width: number;
}

async function rgb(input: string | Buffer | Uint8Array, raw?: { width: number; height: number }): Promise<Raw> {
  const s = raw ? sharp(input, { raw: { ...raw, channels: 3 } }) : sharp(input);
  const { data, info } = await s.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), height: info.height, width: info.width };
}

function mad(a: ArrayLike<number>, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < b.length; i++) s += Math.abs(Math.min(255, Math.max(0, Math.round(a[i]))) - b[i]);
  return s / b.length;
}

const full = (h: number, w: number) => ({ top: 0, left: 0, height: h, width: w });

async function accuracy(): Promise<void> {
  const manifest = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'manifest.json'), 'utf8')) as {
    frames: Array<{ stem: string; image: string }>;
    cases: Array<{ op: string; frame: string; size?: [number, number]; degrees?: number; image: string }>;
  };
  console.log('| OpenCV golden | segdist | sharp resize (linear) | sharp affine (bilinear) | sharp rotate |\n| --- | --- | --- | --- | --- |');
  for (const c of manifest.cases) {
    if (c.op !== 'resize' && c.op !== 'rotate') continue;
    const src = await rgb(path.join(GOLDEN, manifest.frames.find((f) => f.stem === c.frame)!.image));
    const want = await rgb(path.join(GOLDEN, c.image));
    const raw = { width: src.width, height: src.height, channels: 3 as const };
    const cells: string[] = [];
    if (c.op === 'resize') {
      const [oh, ow] = c.size!;
      const ours = new ResizeStep(src.height, src.width, oh, ow).image({ data: Float32Array.from(src.data), rect: full(src.height, src.width) }, full(oh, ow)).data;
      cells.push(mad(ours, want.data).toFixed(3));
      const lin = await sharp(src.data, { raw }).resize(ow, oh, { kernel: 'linear', fit: 'fill' }).raw().toBuffer();
      cells.push(mad(lin, want.data).toFixed(3));
      // x_out = s * x_in + (s - 1) / 2 maps pixel centres as cv2 does.
      const sx = ow / src.width;
      const sy = oh / src.height;
      const aff = await sharp(src.data, { raw })
        .affine([sx, 0, 0, sy], { interpolator: 'bilinear', odx: (sx - 1) / 2, ody: (sy - 1) / 2 })
        .raw()
        .toBuffer({ resolveWithObject: true });
      const cropped = await sharp(aff.data, { raw: { width: aff.info.width, height: aff.info.height, channels: 3 } }).extract({ left: 0, top: 0, width: Math.min(ow, aff.info.width), height: Math.min(oh, aff.info.height) }).raw().toBuffer({ resolveWithObject: true });
      cells.push(cropped.info.width === ow && cropped.info.height === oh ? mad(cropped.data, want.data).toFixed(3) : `size ${cropped.info.width}x${cropped.info.height}`);
      cells.push('');
    } else {
      const ours = new RotateStep(src.height, src.width, c.degrees!, [0, 0, 0], 255).image({ data: Float32Array.from(src.data), rect: full(src.height, src.width) }, full(src.height, src.width)).data;
      cells.push(mad(ours, want.data).toFixed(3), '', '');
      // sharp rotates clockwise for positive angles and grows the canvas: take the centre back out.
      const rot = await sharp(src.data, { raw }).rotate(-c.degrees!, { background: { r: 0, g: 0, b: 0 } }).raw().toBuffer({ resolveWithObject: true });
      const left = Math.round((rot.info.width - src.width) / 2);
      const top = Math.round((rot.info.height - src.height) / 2);
      const centre = await sharp(rot.data, { raw: { width: rot.info.width, height: rot.info.height, channels: 3 } }).extract({ left, top, width: src.width, height: src.height }).raw().toBuffer();
      cells.push(mad(centre, want.data).toFixed(3));
    }
    console.log(`| ${c.image.replace('.png', '')} | ${cells.join(' | ')} |`);
  }
}

/** The PSPNet transforms as whole-image sharp pipelines, one per op (what "image ops in libvips" costs). */
async function sharpPipeline(file: string, rng: Rng): Promise<Float32Array> {
  let img = await rgb(file);
  const raw = () => ({ raw: { width: img.width, height: img.height, channels: 3 as const } });
  const run = async (s: sharp.Sharp): Promise<Raw> => {
    const { data, info } = await s.raw().toBuffer({ resolveWithObject: true });
    return { data: new Uint8Array(data), height: info.height, width: info.width };
  };
  const scale = rng.uniform(0.5, 2);
  img = await run(sharp(img.data, raw()).affine([scale, 0, 0, scale], { interpolator: 'bilinear' }));
  if (rng.next() < 0.5) {
    const angle = rng.uniform(-10, 10);
    const before = img;
    const rot = await run(sharp(img.data, raw()).rotate(angle, { background: { r: 124, g: 116, b: 104 } }));
    img = await run(sharp(rot.data, { raw: { width: rot.width, height: rot.height, channels: 3 } }).extract({ left: Math.round((rot.width - before.width) / 2), top: Math.round((rot.height - before.height) / 2), width: before.width, height: before.height }));
  }
  if (rng.next() < 0.5) img = await run(sharp(img.data, raw()).blur(1.1));
  if (rng.next() < 0.5) img = await run(sharp(img.data, raw()).flop());
  if (img.height < 256 || img.width < 256) {
    img = await run(sharp(img.data, raw()).extend({ bottom: Math.max(0, 256 - img.height), right: Math.max(0, 256 - img.width), background: { r: 124, g: 116, b: 104 } }));
  }
  const top = rng.int(img.height - 256 + 1);
  const left = rng.int(img.width - 256 + 1);
  img = await run(sharp(img.data, raw()).extract({ left, top, width: 256, height: 256 }));
  const out = new Float32Array(img.data.length);
  const mean = [123.675, 116.28, 103.53];
  const std = [58.395, 57.12, 57.375];
  for (let i = 0; i < out.length; i++) out[i] = (img.data[i] - mean[i % 3]) / std[i % 3];
  return out;
}

async function speed(root: string, frames: number): Promise<void> {
  const refs = (await readFolderSplit({ root, split: 'train' })).slice(0, frames);
  const t = compileTransforms(checkTransforms(PSPNET_TRANSFORMS, 'x'), { mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], ignoreIndex: 255, cropSize: [256, 256] });
  const opts = { numClasses: 11, ignoreIndex: 255, labelMap: buildLabelMap({ 11: 255 }) };
  const cpuMs = async (fn: (i: number) => Promise<unknown>): Promise<number> => {
    for (let i = 0; i < 4; i++) await fn(i);
    const c0 = process.cpuUsage();
    for (let i = 0; i < refs.length; i++) await fn(i);
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000 / refs.length;
  };
  const ours = await cpuMs(async (i) => t(await loadSample(refs[i], opts), new Rng(0, i)));
  const viaSharp = await cpuMs((i) => sharpPipeline(refs[i].image, new Rng(0, i)));
  console.log(`\nPSPNet transforms, 256x256 crops, ${refs.length} CamVid frames, CPU ms per sample (all threads of this process):`);
  console.log(`  segdist (decode with sharp, label with png-index, crop-region JS/SIMD kernels, image + label): ${ours.toFixed(1)}`);
  console.log(`  the same ops as whole-image sharp pipelines (image only, no label): ${viaSharp.toFixed(1)}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { root: { type: 'string', default: path.resolve(REPO, '..', 'shared', 'datasets', 'camvid') }, frames: { type: 'string', default: '40' } } });
  sharp.concurrency(1);
  await accuracy();
  await speed(path.resolve(values.root!), Number(values.frames));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
