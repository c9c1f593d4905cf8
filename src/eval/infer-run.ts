// `segdist infer`: a checkpoint and some images in, three PNG/JPEG files per image out:
//   <output>/mask/<stem>.png      class indices, 8-bit single-channel grey (the format labels use)
//   <output>/color/<stem>.png     the same indices as a palette PNG (colour type 3) with the dataset's
//                                 palette, as VOC ships its SegmentationClass masks: viewers show
//                                 colours, readers of the indices (png-index, PIL mode "P") get classes
//   <output>/overlay/<stem>.jpg   the image with the colour mask alpha-blended over it (opacity 0.5)
// Everything the prediction needs comes from the checkpoint: the resolved config (model, test
// settings, data.val.transforms), class count, palette and normalisation; trailing key=value
// arguments override the config (e.g. test.crop_size=[512,512]). A file that cannot be decoded is
// reported and skipped; the others are still written.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { loadBackend } from '../backend/load-backend';
import { loadCheckpoint } from '../checkpoint/checkpoint-manager';
import { DataError, messageOf } from '../data/data-error';
import { encodeIndexPng } from '../data/png-index';
import { buildModel } from '../models/build-model';
import { loadModelState } from '../train/state-dict';
import { evalConfig } from './eval-run';
import { vocPalette } from './palette';
import type { Progress } from './progress';
import { testImagePreparer } from './test-input';
import { describeTest, predictClasses, testOptions } from './test-time';

/** File name endings taken from an input folder (.bmp is listed so that it is reported, not silently ignored: libvips cannot read it). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif', '.bmp'];

export const OVERLAY_OPACITY = 0.5;

export interface InferOptions {
  checkpoint: string;
  /** An image file, or a folder whose image files (not recursive) are all taken. */
  input: string;
  output: string;
  overrides?: string[];
  log: (m: string) => void;
  /** Warnings (skipped files) when there is no progress display. */
  warn: (m: string) => void;
  progress?: (total: number, label: string) => Progress;
}

export interface InferSummary {
  written: number;
  skipped: Array<{ file: string; reason: string }>;
  output: string;
  seconds: number;
}

interface Decoded {
  image: Uint8Array;
  height: number;
  width: number;
}

/** The image files an --input names, sorted; errors name the path. */
export function listInputs(input: string): string[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(input);
  } catch (e) {
    throw new DataError(input, `input not found (${messageOf(e)})`);
  }
  if (st.isFile()) return [input];
  if (!st.isDirectory()) throw new DataError(input, 'input is neither a file nor a folder');
  const files = fs
    .readdirSync(input, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith('.') && IMAGE_EXTENSIONS.includes(path.extname(e.name).toLowerCase()))
    .map((e) => path.join(input, e.name))
    .sort();
  if (files.length === 0) throw new DataError(input, `no image files in this folder (looked for ${IMAGE_EXTENSIONS.join(' ')})`);
  return files;
}

/**
 * Output stems: the file name without its extension, or with it ("a.png" -> "a_png") where two inputs
 * would otherwise write the same files.
 */
export function outputStems(files: readonly string[]): string[] {
  const stem = (f: string) => path.basename(f, path.extname(f));
  const seen = new Map<string, number>();
  for (const f of files) seen.set(stem(f), (seen.get(stem(f)) ?? 0) + 1);
  return files.map((f) => (seen.get(stem(f))! > 1 ? path.basename(f).replace(/\./g, '_') : stem(f)));
}

/** Decodes as load-sample does (3-channel sRGB, 8 bits, stored pixel order); failures are DataErrors. */
async function decodeImage(file: string): Promise<Decoded> {
  try {
    const { data, info } = await sharp(file, { failOn: 'warning' }).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { image: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), height: info.height, width: info.width };
  } catch (err) {
    throw new DataError(file, `cannot decode image (${messageOf(err)})`, { cause: err });
  }
}

/** A full 256-entry PLTE: the dataset's colours, then the VOC colour map (255, the ignore value, is VOC's border colour). */
export function fullPalette(palette: ReadonlyArray<ReadonlyArray<number>>): Uint8Array {
  const voc = vocPalette(256);
  const out = new Uint8Array(256 * 3);
  for (let k = 0; k < 256; k++) {
    const c = k < palette.length ? palette[k] : voc[k];
    out.set([c[0], c[1], c[2]], 3 * k);
  }
  return out;
}

/** image * (1 - opacity) + colour(class) * opacity, rounded. */
export function blendOverlay(image: Uint8Array, classes: Uint8Array, plte: Uint8Array, opacity = OVERLAY_OPACITY): Uint8Array {
  const out = new Uint8Array(image.length);
  const keep = 1 - opacity;
  for (let i = 0; i < classes.length; i++) {
    const c = 3 * classes[i];
    for (let ch = 0; ch < 3; ch++) out[3 * i + ch] = Math.round(image[3 * i + ch] * keep + plte[c + ch] * opacity);
  }
  return out;
}

export async function inferImages(opts: InferOptions): Promise<InferSummary> {
  const started = Date.now();
  const ckpt = loadCheckpoint(opts.checkpoint);
  const cfg = evalConfig(opts.checkpoint, ckpt.state.config, undefined, opts.overrides);
  const ds = ckpt.state.dataset;
  const test = testOptions(cfg);
  const prepare = testImagePreparer(cfg.data.val.transforms, { mean: ds.mean as [number, number, number], std: ds.std as [number, number, number], ignoreIndex: ds.ignore_index });
  const files = listInputs(opts.input);
  const stems = outputStems(files);
  const dirs = { mask: path.join(opts.output, 'mask'), color: path.join(opts.output, 'color'), overlay: path.join(opts.output, 'overlay') };
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  const plte = fullPalette(ds.palette);

  const backend = await loadBackend(cfg.backend, opts.log);
  const model = buildModel(cfg.model, ds.num_classes, cfg.seed);
  const skipped: InferSummary['skipped'] = [];
  let written = 0;
  let progress: Progress | undefined;
  const warn = (m: string) => (progress ? progress.note(m) : opts.warn(m));
  try {
    loadModelState(model, ckpt.model, opts.checkpoint);
    opts.log(`predicting ${files.length} image(s) from ${opts.input} with ${opts.checkpoint} (${describeTest(test)}; backend ${backend}) into ${opts.output}`);
    progress = opts.progress?.(files.length, 'infer');
    const decode = (i: number) => {
      const p = decodeImage(files[i]);
      p.catch(() => {});
      return p;
    };
    let next = decode(0);
    for (let i = 0; i < files.length; i++) {
      const current = next;
      if (i + 1 < files.length) next = decode(i + 1);
      let img: Decoded;
      try {
        img = await current;
      } catch (e) {
        if (!(e instanceof DataError)) throw e;
        skipped.push({ file: files[i], reason: e.detail });
        warn(`warning: skipped ${e.message}`);
        progress?.tick();
        continue;
      }
      const { height, width } = img;
      const input = prepare({ image: img.image, label: new Uint8Array(height * width), height, width });
      const x = tf.tensor4d(input.image, [1, input.height, input.width, 3]);
      let pred: Int32Array;
      try {
        pred = await predictClasses(model, x, height, width, test);
      } finally {
        x.dispose();
      }
      const classes = Uint8Array.from(pred);
      const stem = stems[i];
      await Promise.all([
        fs.promises.writeFile(path.join(dirs.mask, `${stem}.png`), encodeIndexPng({ width, height, data: classes })),
        fs.promises.writeFile(path.join(dirs.color, `${stem}.png`), encodeIndexPng({ width, height, data: classes, palette: plte })),
        sharp(blendOverlay(img.image, classes, plte), { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toFile(path.join(dirs.overlay, `${stem}.jpg`)),
      ]);
      written++;
      progress?.tick();
    }
  } finally {
    progress?.stop();
    model.dispose();
  }
  return { written, skipped, output: opts.output, seconds: (Date.now() - started) / 1000 };
}
