// The picture TensorBoard shows after a validation: for a few fixed validation images, a row of
// input | ground truth | prediction, masks in the dataset's palette (ignored pixels white).
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import type { Batch } from '../data/batch-loader';
import type { Segmentor } from './train-step';

export interface PreviewStyle {
  palette: number[][];
  ignoreIndex: number;
  mean: number[];
  std: number[];
}

const IGNORED = [255, 255, 255];

/** RGB bytes of a class map. */
export function colorize(labels: ArrayLike<number>, palette: number[][], ignoreIndex: number): Uint8Array {
  const out = new Uint8Array(labels.length * 3);
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i] === ignoreIndex ? IGNORED : palette[labels[i]] ?? IGNORED;
    out[i * 3] = c[0];
    out[i * 3 + 1] = c[1];
    out[i * 3 + 2] = c[2];
  }
  return out;
}

/** A PNG grid with one row per image of `batch`; returns it with its size. */
export async function previewGrid(model: Segmentor, batch: Batch, style: PreviewStyle): Promise<{ png: Buffer; width: number; height: number }> {
  const { n, h, w } = batch;
  const pred = tf.tidy(() => tf.argMax(model.forward(tf.tensor4d(batch.images, [n, h, w, 3]), { training: false, seed: 0 }).out, -1));
  const predData = await pred.data();
  pred.dispose();
  const gap = 2;
  const width = 3 * w + 2 * gap;
  const height = n * h + (n - 1) * gap;
  const canvas = new Uint8Array(width * height * 3).fill(64);
  const blit = (rgb: Uint8Array, row: number, col: number) => {
    for (let y = 0; y < h; y++) {
      const dst = ((row * (h + gap) + y) * width + col * (w + gap)) * 3;
      canvas.set(rgb.subarray(y * w * 3, (y + 1) * w * 3), dst);
    }
  };
  const pixels = h * w;
  for (let k = 0; k < n; k++) {
    const input = new Uint8Array(pixels * 3);
    for (let i = 0; i < pixels * 3; i++) {
      const v = batch.images[k * pixels * 3 + i] * style.std[i % 3] + style.mean[i % 3];
      input[i] = Math.max(0, Math.min(255, Math.round(v)));
    }
    blit(input, k, 0);
    blit(colorize(batch.labels.subarray(k * pixels, (k + 1) * pixels), style.palette, style.ignoreIndex), k, 1);
    blit(colorize(predData.subarray(k * pixels, (k + 1) * pixels), style.palette, style.ignoreIndex), k, 2);
  }
  const png = await sharp(Buffer.from(canvas.buffer, canvas.byteOffset, canvas.byteLength), { raw: { width, height, channels: 3 } }).png().toBuffer();
  return { png, width, height };
}
