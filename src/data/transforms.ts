// The fixed training and evaluation transforms segdist started with: LoadedSample (uint8 HWC image +
// uint8 label) -> normalised float32 HWC image + int32 label, the shapes a batch is made of. Training
// now runs the configurable lists of augment.ts (data.train.transforms); these stay as a small public
// API and as the reference the default list is tested against (test/data-augment.test.ts).
//
// Resizing is plain JS rather than sharp: libvips's "linear" reduction widens its kernel when it
// shrinks (anti-aliasing), which is not the two-tap interpolation of cv2.resize INTER_LINEAR that the
// reference pipelines (mmseg, semseg) train with; a JS loop gives the same bits on every machine and
// runs in a worker thread without a round trip through libvips; and at crop sizes of a few hundred
// pixels it costs milliseconds. Both resamplers use half-pixel centres; labels only ever go through
// nearest-neighbour sampling, so every output label value is a value of the input label (or the
// ignore index where padding was added).
//
// Every random draw comes from the Rng passed in, in a fixed order (scale, crop offset, flip), so a
// transform is a pure function of (sample, rng seed).

import type { Rng } from '../util/rng';
import type { LoadedSample } from './load-sample';

export interface PreparedSample {
  /** HWC, 3 channels, normalised. */
  image: Float32Array;
  /** HW class indices; ignoreIndex where nothing should count (including padding). */
  label: Int32Array;
  height: number;
  width: number;
}

export type Transform = (sample: LoadedSample, rng: Rng) => PreparedSample;

export interface Normalization {
  /** Per-channel RGB mean on the 0..255 scale, e.g. ImageNet's [123.675, 116.28, 103.53]. */
  mean: [number, number, number];
  /** Per-channel RGB std on the 0..255 scale, e.g. [58.395, 57.12, 57.375]. */
  std: [number, number, number];
}

export interface TrainTransformOptions extends Normalization {
  /** Output [H, W]; smaller images are padded (image with 0 after normalisation, label with ignore). */
  cropSize: [number, number];
  /** Random scale factor range [lo, hi], drawn uniformly. */
  scaleRange: [number, number];
  /**
   * [H, W] the scale factor is relative to. Absent: the image's own size (semseg's RandScale).
   * Present with keepRatio (default): the image is fitted inside base*s keeping its aspect ratio, long
   * side to the larger base side (mmseg's RandomResize with keep_ratio). keepRatio false: exactly base*s.
   */
  baseSize?: [number, number];
  keepRatio?: boolean;
  /** Probability of a horizontal flip; default 0.5. */
  flipProb?: number;
  ignoreIndex: number;
}

export interface EvalTransformOptions extends Normalization {
  /** Resize image (bilinear) and label (nearest) to exactly [H, W]; absent keeps the stored size. */
  size?: [number, number];
}

/**
 * A rectangle of a resized image. Training crops only need the crop window of the scaled image, so
 * the resamplers compute just that window (a 2x upscale of a 360x480 frame into a 360x480 crop
 * touches a quarter of the pixels a full resize would); each pixel is the same as in a full resize.
 */
export interface Window {
  top: number;
  left: number;
  height: number;
  width: number;
}

function fullWindow(outHeight: number, outWidth: number, window?: Window): Window {
  const w = window ?? { top: 0, left: 0, height: outHeight, width: outWidth };
  if (w.top < 0 || w.left < 0 || w.height < 0 || w.width < 0 || w.top + w.height > outHeight || w.left + w.width > outWidth) {
    throw new Error(`resize: window ${JSON.stringify(w)} is outside the ${outHeight}x${outWidth} output`);
  }
  return w;
}

/**
 * Bilinear resize (half-pixel centres, edge clamp, no anti-aliasing) of an HWC image to
 * outHeight x outWidth, as float32; with `window`, only that part of the resized image.
 */
export function resizeBilinear(
  src: ArrayLike<number>,
  height: number,
  width: number,
  channels: number,
  outHeight: number,
  outWidth: number,
  window?: Window,
): Float32Array {
  const win = fullWindow(outHeight, outWidth, window);
  const out = new Float32Array(win.height * win.width * channels);
  // Per-column taps are the same on every row: compute them once.
  const x0s = new Int32Array(win.width);
  const x1s = new Int32Array(win.width);
  const fxs = new Float64Array(win.width);
  const sx = width / outWidth;
  for (let j = 0; j < win.width; j++) {
    const fx = Math.min(Math.max((win.left + j + 0.5) * sx - 0.5, 0), width - 1);
    x0s[j] = Math.floor(fx);
    x1s[j] = Math.min(x0s[j] + 1, width - 1);
    fxs[j] = fx - x0s[j];
  }
  const sy = height / outHeight;
  let o = 0;
  for (let i = 0; i < win.height; i++) {
    const fy = Math.min(Math.max((win.top + i + 0.5) * sy - 0.5, 0), height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, height - 1);
    const wy = fy - y0;
    const row0 = y0 * width * channels;
    const row1 = y1 * width * channels;
    for (let j = 0; j < win.width; j++) {
      const a = x0s[j] * channels;
      const b = x1s[j] * channels;
      const wx = fxs[j];
      for (let c = 0; c < channels; c++) {
        const top = src[row0 + a + c] + (src[row0 + b + c] - src[row0 + a + c]) * wx;
        const bottom = src[row1 + a + c] + (src[row1 + b + c] - src[row1 + a + c]) * wx;
        out[o++] = top + (bottom - top) * wy;
      }
    }
  }
  return out;
}

/**
 * Nearest-neighbour resize (half-pixel centres) of a single-channel map, optionally only `window` of
 * the result. Every output value is an input value.
 */
export function resizeNearest(src: Uint8Array, height: number, width: number, outHeight: number, outWidth: number, window?: Window): Uint8Array {
  const win = fullWindow(outHeight, outWidth, window);
  const out = new Uint8Array(win.height * win.width);
  const cols = new Int32Array(win.width);
  for (let j = 0; j < win.width; j++) cols[j] = Math.min(Math.floor(((win.left + j + 0.5) * width) / outWidth), width - 1);
  for (let i = 0; i < win.height; i++) {
    const row = Math.min(Math.floor(((win.top + i + 0.5) * height) / outHeight), height - 1) * width;
    for (let j = 0; j < win.width; j++) out[i * win.width + j] = src[row + cols[j]];
  }
  return out;
}

/** (v - mean) / std per channel, in place on an HWC float image. */
export function normalizeInPlace(image: Float32Array, norm: Normalization): Float32Array {
  const inv = norm.std.map((s) => 1 / s);
  for (let i = 0; i < image.length; i += 3) {
    image[i] = (image[i] - norm.mean[0]) * inv[0];
    image[i + 1] = (image[i + 1] - norm.mean[1]) * inv[1];
    image[i + 2] = (image[i + 2] - norm.mean[2]) * inv[2];
  }
  return image;
}

/** The size an image of (h, w) is resized to for scale factor s (see TrainTransformOptions.baseSize). */
export function scaledSize(
  height: number,
  width: number,
  scale: number,
  baseSize?: [number, number],
  keepRatio = true,
): [number, number] {
  if (baseSize === undefined) return [Math.max(1, Math.round(height * scale)), Math.max(1, Math.round(width * scale))];
  const [bh, bw] = baseSize;
  if (!keepRatio) return [Math.max(1, Math.round(bh * scale)), Math.max(1, Math.round(bw * scale))];
  const longTarget = Math.max(bh, bw) * scale;
  const shortTarget = Math.min(bh, bw) * scale;
  const f = Math.min(longTarget / Math.max(height, width), shortTarget / Math.min(height, width));
  return [Math.max(1, Math.round(height * f)), Math.max(1, Math.round(width * f))];
}

/**
 * Places an (height x width) image and label at the top-left of an (outH x outW) output, filling the
 * rest with 0 (the mean, after normalisation) and ignoreIndex, optionally mirrored left-right.
 */
function padAndFlip(
  image: Float32Array,
  label: Uint8Array,
  height: number,
  width: number,
  outH: number,
  outW: number,
  flip: boolean,
  ignoreIndex: number,
): { image: Float32Array; label: Int32Array } {
  const outImage = new Float32Array(outH * outW * 3);
  const outLabel = new Int32Array(outH * outW).fill(ignoreIndex);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = y * outW + (flip ? outW - 1 - x : x);
      const s = y * width + x;
      outLabel[d] = label[s];
      outImage[3 * d] = image[3 * s];
      outImage[3 * d + 1] = image[3 * s + 1];
      outImage[3 * d + 2] = image[3 * s + 2];
    }
  }
  return { image: outImage, label: outLabel };
}

function checkPair(name: string, v: [number, number], kind: 'positive' | 'size'): void {
  const ok = (x: number): boolean => Number.isFinite(x) && x > 0 && (kind === 'positive' || Number.isInteger(x));
  if (!Array.isArray(v) || v.length !== 2 || !v.every(ok)) {
    throw new Error(`${name} must be two ${kind === 'size' ? 'positive integers' : 'positive numbers'}, got ${JSON.stringify(v)}`);
  }
}

function checkNormalization(opts: Normalization): void {
  if (opts.mean.length !== 3 || opts.std.length !== 3 || opts.std.some((s) => !(s > 0))) {
    throw new Error(`normalisation needs 3 means and 3 positive stds, got mean ${JSON.stringify(opts.mean)} std ${JSON.stringify(opts.std)}`);
  }
}

/** Random scale -> pad -> random crop -> random horizontal flip -> normalise. */
export function trainTransform(opts: TrainTransformOptions): Transform {
  checkPair('trainTransform: cropSize', opts.cropSize, 'size');
  checkPair('trainTransform: scaleRange', opts.scaleRange, 'positive');
  if (opts.scaleRange[0] > opts.scaleRange[1]) throw new Error(`trainTransform: scaleRange ${JSON.stringify(opts.scaleRange)} is reversed`);
  if (opts.baseSize !== undefined) checkPair('trainTransform: baseSize', opts.baseSize, 'positive');
  checkNormalization(opts);
  const [cropH, cropW] = opts.cropSize;
  const flipProb = opts.flipProb ?? 0.5;
  const keepRatio = opts.keepRatio ?? true;

  return (sample, rng) => {
    const scale = rng.uniform(opts.scaleRange[0], opts.scaleRange[1]);
    const [h, w] = scaledSize(sample.height, sample.width, scale, opts.baseSize, keepRatio);
    // Padding to the crop size goes bottom/right, so the offset range is whatever exceeds the crop.
    const top = rng.int(Math.max(h - cropH, 0) + 1);
    const left = rng.int(Math.max(w - cropW, 0) + 1);
    const flip = rng.next() < flipProb;
    // The part of the scaled image inside the crop; the rest of the crop is padding.
    const win = { top, left, height: Math.min(cropH, h - top), width: Math.min(cropW, w - left) };
    const image = normalizeInPlace(resizeBilinear(sample.image, sample.height, sample.width, 3, h, w, win), opts);
    const label = resizeNearest(sample.label, sample.height, sample.width, h, w, win);
    const out = padAndFlip(image, label, win.height, win.width, cropH, cropW, flip, opts.ignoreIndex);
    return { image: out.image, label: out.label, height: cropH, width: cropW };
  };
}

/** Deterministic evaluation path: optional fixed resize, normalise. Ignores the rng. */
export function evalTransform(opts: EvalTransformOptions): Transform {
  if (opts.size !== undefined) checkPair('evalTransform: size', opts.size, 'size');
  checkNormalization(opts);
  return (sample) => {
    const [h, w] = opts.size ?? [sample.height, sample.width];
    const image = normalizeInPlace(resizeBilinear(sample.image, sample.height, sample.width, 3, h, w), opts);
    const small = resizeNearest(sample.label, sample.height, sample.width, h, w);
    return { image, label: Int32Array.from(small), height: h, width: w };
  };
}
