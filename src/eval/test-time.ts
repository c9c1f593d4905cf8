// Test-time prediction: whole image, sliding window, multi-scale, horizontal flip. One function,
// predictScores, turns a batch of normalised images into class scores at the resolution the caller
// asks for (the original label's), the only thing `segdist eval` and `segdist infer` differ in being
// what they do with the argmax.
//
// What each mode computes (docs/eval.md has the long form and the references):
//   whole       logits of the whole image (mmseg's whole_inference).
//   slide       windows of cropSize every stride, the last one in each axis moved back to end at the
//               border; the logits of overlapping windows are averaged (mmseg's slide_inference). An
//               image no larger than the window is one window: the whole image, so slide equals whole.
//   multiscale  for each scale s the image is resized to round(s*h) x round(s*w) (bilinear, half-pixel
//               centres: cv2 INTER_LINEAR, as the training pipeline resizes) and predicted with windows
//               as in slide (one window where the resized image fits in cropSize: semseg's scale_process).
//   flip        every pass is repeated on the mirrored image; its logits are mirrored back (whole mode
//               puts both in one forward pass; slide runs them one after the other, since its windows
//               are batched already and a full-size accumulator per image is what costs memory).
// Each pass's logits are resized to the output size with the model's align_corners (mmseg's rescale).
// With one pass, the scores are those logits. With several (scales x flips), they are the mean of the
// passes' softmax probabilities: what semseg's multi-scale test and mmseg's aug_test average. The
// argmax of one pass's logits is the argmax of its probabilities, so the two agree where both apply.

import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../config/config-error';
import type { SegdistConfig } from '../config/config-types';
import type { Segmentor } from '../train/train-step';

export type TestMode = 'whole' | 'slide' | 'multiscale';

export interface TestOptions {
  mode: TestMode;
  /** Window [height, width] (slide, multiscale). */
  cropSize: [number, number];
  /** Step between windows [height, width]; at most cropSize. */
  stride: [number, number];
  /** Scale factors (multiscale); whole and slide use [1]. */
  scales: number[];
  flip: boolean;
  /** The model's align_corners: how logits are resized to the output size. */
  alignCorners: boolean;
  /** Most images (whole) or windows (slide) in one forward pass. */
  batchSize: number;
}

/** The test section of a resolved config as TestOptions; inconsistent values are ConfigErrors naming the key. */
export function testOptions(cfg: SegdistConfig): TestOptions {
  const t = cfg.test;
  const cropSize = t.crop_size ?? cfg.data.train.crop_size;
  const stride = t.stride ?? [Math.ceil((cropSize[0] * 2) / 3), Math.ceil((cropSize[1] * 2) / 3)];
  if (t.mode !== 'whole' && (stride[0] > cropSize[0] || stride[1] > cropSize[1])) {
    throw new ConfigError(
      `test.stride: [${stride}] is larger than the window [${cropSize}]` +
        `${t.crop_size === null ? ' (test.crop_size null: data.train.crop_size)' : ''}; the pixels between windows would get no prediction`,
    );
  }
  return {
    mode: t.mode,
    cropSize: [cropSize[0], cropSize[1]],
    stride: [stride[0], stride[1]],
    scales: t.mode === 'multiscale' ? t.scales.slice() : [1],
    flip: t.flip,
    alignCorners: cfg.model.align_corners,
    batchSize: cfg.data.val.batch_size,
  };
}

/** One line for logs: "slide 512x512 stride 341x341, flip". */
export function describeTest(o: TestOptions): string {
  const win = `${o.cropSize[0]}x${o.cropSize[1]} stride ${o.stride[0]}x${o.stride[1]}`;
  const what = o.mode === 'whole' ? 'whole' : o.mode === 'slide' ? `slide ${win}` : `multiscale [${o.scales.join(', ')}] (windows ${win})`;
  return o.flip ? `${what}, flip` : what;
}

export interface Window {
  top: number;
  left: number;
  height: number;
  width: number;
}

/**
 * mmseg's slide_inference grid over an h x w image: windows of min(crop, size) every stride, the last
 * in each axis moved back so that it ends at the border. Every pixel is in at least one window.
 */
export function slideWindows(h: number, w: number, crop: [number, number], stride: [number, number]): Window[] {
  const axis = (size: number, c: number, s: number): Array<[number, number]> => {
    const len = Math.min(c, size);
    const grids = Math.floor(Math.max(size - c + s - 1, 0) / s) + 1;
    const out: Array<[number, number]> = [];
    for (let i = 0; i < grids; i++) {
      const end = Math.min(i * s + c, size);
      out.push([Math.max(end - c, 0), len]);
    }
    return out;
  };
  const rows = axis(h, crop[0], stride[0]);
  const cols = axis(w, crop[1], stride[1]);
  const out: Window[] = [];
  for (const [top, height] of rows) for (const [left, width] of cols) out.push({ top, left, height, width });
  return out;
}

function forwardLogits(model: Segmentor, x: tf.Tensor4D): tf.Tensor4D {
  return model.forward(x, { training: false, seed: 0 }).out;
}

/** Logits of x [N, h, w, 3] by sliding windows; overlaps averaged. Windows are batched, up to batchSize rows per pass. */
export function slideLogits(model: Segmentor, x: tf.Tensor4D, opts: Pick<TestOptions, 'cropSize' | 'stride' | 'batchSize'>): tf.Tensor4D {
  const [n, h, w] = x.shape;
  const windows = slideWindows(h, w, opts.cropSize, opts.stride);
  if (windows.length === 1) return forwardLogits(model, x);
  const count = new Float32Array(h * w);
  for (const win of windows) {
    for (let y = win.top; y < win.top + win.height; y++) for (let c = win.left; c < win.left + win.width; c++) count[y * w + c]++;
  }
  const perPass = Math.max(1, Math.floor(opts.batchSize / n));
  let sum: tf.Tensor4D | null = null;
  for (let first = 0; first < windows.length; first += perPass) {
    const group = windows.slice(first, first + perPass);
    const next: tf.Tensor4D = tf.tidy(() => {
      const crops = group.map((win) => tf.slice(x, [0, win.top, win.left, 0], [n, win.height, win.width, 3]));
      const logits = forwardLogits(model, crops.length === 1 ? crops[0] : tf.concat(crops, 0));
      let acc: tf.Tensor4D | null = sum;
      group.forEach((win, i) => {
        const part = group.length === 1 ? logits : tf.slice(logits, [i * n, 0, 0, 0], [n, win.height, win.width, -1]);
        const padded = tf.pad(part, [[0, 0], [win.top, h - win.top - win.height], [win.left, w - win.left - win.width], [0, 0]]);
        acc = acc === null ? padded : (tf.add(acc, padded) as tf.Tensor4D);
      });
      return acc!;
    });
    sum?.dispose();
    sum = next;
  }
  const total = sum!;
  return tf.tidy(() => {
    const out = tf.div(total, tf.tensor4d(count, [1, h, w, 1])) as tf.Tensor4D;
    total.dispose();
    return out;
  });
}

/** Bilinear resize with PyTorch's F.interpolate semantics for the given align_corners (forward only). */
function resizeTo(x: tf.Tensor4D, h: number, w: number, alignCorners: boolean): tf.Tensor4D {
  const [, xh, xw] = x.shape;
  if (xh === h && xw === w) return x;
  return tf.image.resizeBilinear(x, [h, w], alignCorners, !alignCorners);
}

/** The size an h x w image has at scale s (mmseg/semseg: rounded, at least 1). */
export function scaledSize(h: number, w: number, s: number): [number, number] {
  return [Math.max(1, Math.round(h * s)), Math.max(1, Math.round(w * s))];
}

/**
 * Class scores [N, outH, outW, C] of a batch x [N, h, w, 3] of normalised images: logits for a single
 * pass, the mean softmax probability over passes otherwise (see the file comment).
 */
export function predictScores(model: Segmentor, x: tf.Tensor4D, outH: number, outW: number, opts: TestOptions): tf.Tensor4D {
  const [n, h, w] = x.shape;
  const passes = opts.scales.length * (opts.flip ? 2 : 1);
  let acc: tf.Tensor4D | null = null;
  for (const s of opts.scales) {
    const next: tf.Tensor4D = tf.tidy(() => {
      const [sh, sw] = scaledSize(h, w, s);
      // Image resize: half-pixel centres (cv2 INTER_LINEAR), as the training pipeline resizes images.
      const xs = sh === h && sw === w ? x : tf.image.resizeBilinear(x, [sh, sw], false, true);
      const logitsOf = (input: tf.Tensor4D) => (opts.mode === 'whole' ? forwardLogits(model, input) : slideLogits(model, input, opts));
      let parts: tf.Tensor4D[];
      if (!opts.flip) {
        parts = [logitsOf(xs)];
      } else if (opts.mode === 'whole') {
        // The mirrored copy rides in the same forward pass.
        const both = logitsOf(tf.concat([xs, tf.reverse(xs, 2)], 0));
        parts = [tf.slice(both, [0, 0, 0, 0], [n, -1, -1, -1]), tf.reverse(tf.slice(both, [n, 0, 0, 0], [n, -1, -1, -1]), 2)];
      } else {
        // Windows are batched already; one orientation at a time halves the full-size accumulator.
        parts = [logitsOf(xs), tf.reverse(logitsOf(tf.reverse(xs, 2)), 2)];
      }
      let sum: tf.Tensor4D | null = acc;
      for (const p of parts) {
        const resized = resizeTo(p, outH, outW, opts.alignCorners);
        const score = passes === 1 ? resized : tf.softmax(resized, -1);
        sum = sum === null ? score : (tf.add(sum, score) as tf.Tensor4D);
      }
      return sum!;
    });
    acc?.dispose();
    acc = next;
  }
  if (passes === 1) return acc!;
  const total = acc!;
  return tf.tidy(() => {
    const out = tf.div(total, passes) as tf.Tensor4D;
    total.dispose();
    return out;
  });
}

/** Predicted class per pixel, [N * outH * outW] row-major, for a batch of normalised images. */
export async function predictClasses(model: Segmentor, x: tf.Tensor4D, outH: number, outW: number, opts: TestOptions): Promise<Int32Array> {
  const pred = tf.tidy(() => tf.argMax(predictScores(model, x, outH, outW, opts), -1));
  try {
    return (await pred.data()) as Int32Array;
  } finally {
    pred.dispose();
  }
}
