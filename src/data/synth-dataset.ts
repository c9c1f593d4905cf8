// A synthetic segmentation dataset in the folder layout (the same layout as the CamVid copy), for
// tests, smoke runs and golden-loss runs that must not depend on downloaded data.
//
// Each image is a textured, noisy, low-saturation background with a few circles, rotated rectangles
// and triangles on it. The class of a shape is carried by its colour and texture, not by its outline
// (every class uses every outline): class c >= 1 has its own hue, evenly spaced around the colour wheel,
// plus one of three texture families (stripes, dots, a smooth ramp), and each shape varies hue,
// saturation, brightness, texture scale and angle around its class's values. That makes classes
// separable by local colour statistics, which a small CNN picks up within a few hundred steps, while
// boundaries still have to be found from the image. Class 0 is the background. As in Pascal VOC, a thin
// band along every boundary between different classes is marked with the ignore index (255).
//
// Every draw for image i of split s comes from Rng(seed, keyOf(s), i), so the files are a pure function
// of the options: the same seed gives byte-identical files whatever the write order. dataset.json is
// written last; its presence means the folder is complete.

import { mkdir, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import sharp from 'sharp';
import { keyOf, Rng } from '../util/rng';
import { encodeIndexPng } from './png-index';

export const SYNTH_IGNORE_INDEX = 255;

export interface SynthDatasetOptions {
  /** Output folder; created if missing. Existing files of the same names are overwritten. */
  out: string;
  /** Number of classes including the background (class 0); 2..255. */
  classes: number;
  /**
   * Images per split, e.g. { train: 400, val: 50 }. A plain number gives that many images to each
   * split named in `splits` (default: just "train").
   */
  count: number | Record<string, number>;
  /** [height, width] of every image, each at least 16. */
  size: [number, number];
  seed: number;
  /** Split names used when `count` is a number; default ["train"]. */
  splits?: string[];
  /** Most shapes per image (at least one is always drawn); default 4. */
  maxShapes?: number;
  /** Half-width in pixels of the ignore band along class boundaries; 0 for none; default 1. */
  ignoreBorder?: number;
  /** JPEG quality of the images; default 90. */
  jpegQuality?: number;
  /** Images generated and encoded at once; default 4. */
  concurrency?: number;
}

export interface SynthDatasetSummary {
  root: string;
  numClasses: number;
  ignoreIndex: number;
  classNames: string[];
  /** RGB per class, the class's base colour (background black). */
  palette: [number, number, number][];
  /** Images written per split. */
  splits: Record<string, number>;
  /** Files written, list files and dataset.json included. */
  files: number;
}

interface ClassStyle {
  hue: number;
  texture: 'stripes' | 'dots' | 'ramp';
}

const TEXTURES: ClassStyle['texture'][] = ['stripes', 'dots', 'ramp'];

function classStyle(c: number, classes: number): ClassStyle {
  return { hue: ((c - 1) / (classes - 1) + 0.02) % 1, texture: TEXTURES[(c - 1) % TEXTURES.length] };
}

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const hh = (((h % 1) + 1) % 1) * 6;
  const i = Math.floor(hh);
  const f = hh - i;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  const rgb = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ][i % 6];
  return [rgb[0] * 255, rgb[1] * 255, rgb[2] * 255];
}

/** The class's nominal colour, used as its palette entry. */
function classColour(c: number, classes: number): [number, number, number] {
  if (c === 0) return [0, 0, 0];
  return hsvToRgb(classStyle(c, classes).hue, 0.75, 0.75).map((x) => Math.round(x)) as [number, number, number];
}

interface Shape {
  cls: number;
  /** Inside test in pixel coordinates (pixel centres). */
  contains: (x: number, y: number) => boolean;
  bbox: [number, number, number, number]; // x0, y0, x1, y1 inclusive, clipped later
  rgb: [number, number, number];
  /** Texture value in [-1, 1] at (x, y), scaled by amp. */
  texture: (x: number, y: number) => number;
  amp: number;
}

function makeShape(rng: Rng, cls: number, classes: number, height: number, width: number): Shape {
  const style = classStyle(cls, classes);
  const minSide = Math.min(height, width);
  const r = rng.uniform(0.12, 0.3) * minSide;
  const cx = rng.uniform(0, width);
  const cy = rng.uniform(0, height);
  const kind = rng.int(3);
  let contains: Shape['contains'];
  let reach = r;
  if (kind === 0) {
    contains = (x, y) => (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
  } else if (kind === 1) {
    const a = rng.uniform(0, Math.PI);
    const hw = rng.uniform(0.5, 1) * r;
    const hh = rng.uniform(0.5, 1) * r;
    const cos = Math.cos(a);
    const sin = Math.sin(a);
    contains = (x, y) => {
      const dx = x - cx;
      const dy = y - cy;
      return Math.abs(dx * cos + dy * sin) <= hw && Math.abs(-dx * sin + dy * cos) <= hh;
    };
    reach = Math.hypot(hw, hh);
  } else {
    const start = rng.uniform(0, 2 * Math.PI);
    const pts: [number, number][] = [];
    for (let k = 0; k < 3; k++) {
      const ang = start + (k * 2 * Math.PI) / 3 + rng.uniform(-0.5, 0.5);
      const rr = rng.uniform(0.7, 1.2) * r;
      pts.push([cx + rr * Math.cos(ang), cy + rr * Math.sin(ang)]);
    }
    reach = 1.2 * r;
    const edge = (p: [number, number], q: [number, number], x: number, y: number): number =>
      (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0]);
    contains = (x, y) => {
      const d0 = edge(pts[0], pts[1], x, y);
      const d1 = edge(pts[1], pts[2], x, y);
      const d2 = edge(pts[2], pts[0], x, y);
      return (d0 >= 0 && d1 >= 0 && d2 >= 0) || (d0 <= 0 && d1 <= 0 && d2 <= 0);
    };
  }
  // Colour: the class hue with a jitter well below the spacing between class hues.
  const jitter = Math.min(0.2 / (classes - 1), 0.04);
  const rgb = hsvToRgb(style.hue + rng.uniform(-jitter, jitter), rng.uniform(0.6, 0.9), rng.uniform(0.55, 0.9));
  const period = rng.uniform(4, 9);
  const theta = rng.uniform(0, Math.PI);
  const phase = rng.uniform(0, 2 * Math.PI);
  const ux = Math.cos(theta);
  const uy = Math.sin(theta);
  const w = (2 * Math.PI) / period;
  let texture: Shape['texture'];
  if (style.texture === 'stripes') {
    texture = (x, y) => Math.sin(w * (x * ux + y * uy) + phase);
  } else if (style.texture === 'dots') {
    texture = (x, y) => Math.sin(w * (x * ux + y * uy) + phase) * Math.sin(w * (-x * uy + y * ux) + phase);
  } else {
    texture = (x, y) => Math.max(-1, Math.min(1, ((x - cx) * ux + (y - cy) * uy) / r));
  }
  const bbox: Shape['bbox'] = [Math.floor(cx - reach) - 1, Math.floor(cy - reach) - 1, Math.ceil(cx + reach) + 1, Math.ceil(cy + reach) + 1];
  return { cls, contains, bbox, rgb, texture, amp: rng.uniform(0.15, 0.3) };
}

/** Draws one image and its label map. Pure function of (rng state, options). */
function drawSample(
  rng: Rng,
  classes: number,
  height: number,
  width: number,
  maxShapes: number,
  ignoreBorder: number,
): { image: Uint8Array; label: Uint8Array } {
  // Background: grey-ish colour, brightness modulated by a few slow waves.
  const bg = hsvToRgb(rng.next(), rng.uniform(0, 0.2), rng.uniform(0.3, 0.75));
  const waves = Array.from({ length: 3 }, () => {
    const theta = rng.uniform(0, 2 * Math.PI);
    const period = rng.uniform(15, 60);
    return { kx: (2 * Math.PI * Math.cos(theta)) / period, ky: (2 * Math.PI * Math.sin(theta)) / period, phase: rng.uniform(0, 2 * Math.PI), amp: rng.uniform(0.03, 0.08) };
  });
  const colour = new Float32Array(height * width * 3);
  const label = new Uint8Array(height * width);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let m = 1;
      for (const wv of waves) m += wv.amp * Math.sin(wv.kx * x + wv.ky * y + wv.phase);
      const o = (y * width + x) * 3;
      colour[o] = bg[0] * m;
      colour[o + 1] = bg[1] * m;
      colour[o + 2] = bg[2] * m;
    }
  }

  // Shapes, painted in order (later ones occlude earlier ones).
  const nShapes = 1 + rng.int(maxShapes);
  for (let s = 0; s < nShapes; s++) {
    const cls = 1 + rng.int(classes - 1);
    const shape = makeShape(rng, cls, classes, height, width);
    const x0 = Math.max(0, shape.bbox[0]);
    const y0 = Math.max(0, shape.bbox[1]);
    const x1 = Math.min(width - 1, shape.bbox[2]);
    const y1 = Math.min(height - 1, shape.bbox[3]);
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        if (!shape.contains(x + 0.5, y + 0.5)) continue;
        const m = 1 + shape.amp * shape.texture(x, y);
        const i = y * width + x;
        label[i] = cls;
        colour[3 * i] = shape.rgb[0] * m;
        colour[3 * i + 1] = shape.rgb[1] * m;
        colour[3 * i + 2] = shape.rgb[2] * m;
      }
    }
  }

  // Sensor noise, then quantise.
  const image = new Uint8Array(height * width * 3);
  for (let i = 0; i < image.length; i++) {
    const v = Math.round(colour[i] + 6 * rng.normal());
    image[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }

  return { image, label: ignoreBoundaries(label, height, width, ignoreBorder) };
}

/** Marks every pixel with a different class within `radius` (Chebyshev) as ignore, VOC-style. */
function ignoreBoundaries(label: Uint8Array, height: number, width: number, radius: number): Uint8Array {
  if (radius <= 0) return label;
  const out = label.slice();
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = label[y * width + x];
      search: for (let dy = -radius; dy <= radius; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -radius; dx <= radius; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          if (label[yy * width + xx] !== v) {
            out[y * width + x] = SYNTH_IGNORE_INDEX;
            break search;
          }
        }
      }
    }
  }
  return out;
}

/** Runs `task(i)` for i in 0..n-1 with at most `limit` in flight. */
async function forEachBounded(n: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

function splitCounts(opts: SynthDatasetOptions): Record<string, number> {
  if (typeof opts.count !== 'number' && opts.splits !== undefined) {
    throw new Error('synthesizeDataset: splits is only used with a numeric count; name the splits in count instead');
  }
  const counts: Record<string, number> =
    typeof opts.count === 'number' ? Object.fromEntries((opts.splits ?? ['train']).map((s) => [s, opts.count as number])) : { ...opts.count };
  const names = Object.keys(counts);
  if (names.length === 0) throw new Error('synthesizeDataset: no splits to write');
  for (const name of names) {
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`synthesizeDataset: split name "${name}" must be letters, digits, _ or -`);
    const n = counts[name];
    if (!Number.isInteger(n) || n < 1) throw new Error(`synthesizeDataset: count for split "${name}" must be a positive integer, got ${n}`);
  }
  return counts;
}

/** Writes a synthetic dataset in the folder layout and returns what it wrote. */
export async function synthesizeDataset(opts: SynthDatasetOptions): Promise<SynthDatasetSummary> {
  const { classes, seed } = opts;
  const [height, width] = opts.size;
  if (!Number.isInteger(classes) || classes < 2 || classes > 255) throw new Error(`synthesizeDataset: classes must be an integer in 2..255, got ${classes}`);
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 16 || width < 16) {
    throw new Error(`synthesizeDataset: size must be two integers >= 16 ([height, width]), got ${JSON.stringify(opts.size)}`);
  }
  if (!Number.isFinite(seed)) throw new Error(`synthesizeDataset: seed must be a number, got ${seed}`);
  const maxShapes = opts.maxShapes ?? 4;
  const ignoreBorder = opts.ignoreBorder ?? 1;
  const quality = opts.jpegQuality ?? 90;
  const concurrency = opts.concurrency ?? 4;
  if (!Number.isInteger(maxShapes) || maxShapes < 1) throw new Error(`synthesizeDataset: maxShapes must be an integer >= 1, got ${maxShapes}`);
  if (!Number.isInteger(ignoreBorder) || ignoreBorder < 0) throw new Error(`synthesizeDataset: ignoreBorder must be an integer >= 0, got ${ignoreBorder}`);
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new Error(`synthesizeDataset: jpegQuality must be an integer in 1..100, got ${quality}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`synthesizeDataset: concurrency must be an integer >= 1, got ${concurrency}`);
  const counts = splitCounts(opts);
  const root = path.resolve(opts.out);
  // dataset.json marks a complete folder, so a stale one must not outlive a rewrite that fails.
  await mkdir(root, { recursive: true });
  await rm(path.join(root, 'dataset.json'), { force: true });

  let files = 0;
  for (const [split, n] of Object.entries(counts)) {
    const imageDir = path.join(root, 'images', split);
    const labelDir = path.join(root, 'labels', split);
    await mkdir(imageDir, { recursive: true });
    await mkdir(labelDir, { recursive: true });
    const digits = Math.max(4, String(n - 1).length);
    const stems = Array.from({ length: n }, (_, i) => `${split}_${String(i).padStart(digits, '0')}`);
    const splitKey = keyOf(split);
    await forEachBounded(n, concurrency, async (i) => {
      const { image, label } = drawSample(new Rng(seed, splitKey, i), classes, height, width, maxShapes, ignoreBorder);
      const jpeg = await sharp(image, { raw: { width, height, channels: 3 } }).jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer();
      // Labels go through our own encoder, not sharp: sharp 0.35 writes a raw 1-channel buffer as an
      // RGB PNG unless told toColourspace('b-w'), and a PNG of class indices should not depend on a
      // colour-management default.
      const png = encodeIndexPng({ width, height, data: label });
      await Promise.all([writeFile(path.join(imageDir, `${stems[i]}.jpg`), jpeg), writeFile(path.join(labelDir, `${stems[i]}.png`), png)]);
    });
    await writeFile(path.join(root, `${split}.txt`), stems.join('\n') + '\n');
    files += 2 * n + 1;
  }

  const classNames = Array.from({ length: classes }, (_, c) => `class${c}`);
  const palette = Array.from({ length: classes }, (_, c) => classColour(c, classes));
  const meta = {
    name: 'synth',
    num_classes: classes,
    class_names: classNames,
    palette,
    ignore_index: SYNTH_IGNORE_INDEX,
    image_size: [height, width],
    splits: counts,
    seed,
    generator: 'segdist synth v1',
  };
  await writeFile(path.join(root, 'dataset.json'), JSON.stringify(meta, null, 2) + '\n');
  files += 1;
  return { root, numClasses: classes, ignoreIndex: SYNTH_IGNORE_INDEX, classNames, palette, splits: counts, files };
}
