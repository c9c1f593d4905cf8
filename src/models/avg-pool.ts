// The shortcut pooling of ResNet-v1d: nn.AvgPool2d(kernel_size=s, stride=s, ceil_mode=True,
// count_include_pad=False). Windows do not overlap; with ceil_mode an odd-sized input gets a last,
// partial window that averages only the pixels it covers. Done as zero padding to a multiple of s, a
// reshape that puts each window on its own axes, a sum, and division by each window's true pixel
// count: plain ops with gradients everywhere, and no dependence on how a backend's AvgPool counts
// padding.

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';

function windowCounts(size: number, s: number): number[] {
  const out: number[] = [];
  for (let start = 0; start < size; start += s) out.push(Math.min(s, size - start));
  return out;
}

export class AvgPool2d extends Module implements Layer {
  /** Non-overlapping pooling only (kernel = stride), the one ResNet-v1d uses. */
  constructor(readonly stride: number) {
    super();
    if (!Number.isInteger(stride) || stride < 1) throw new Error(`Error in AvgPool2d: bad stride ${stride}`);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    const s = this.stride;
    if (s === 1) return x;
    const [n, h, w, c] = x.shape;
    const rows = windowCounts(h, s);
    const cols = windowCounts(w, s);
    const oh = rows.length;
    const ow = cols.length;
    const inv = new Float32Array(oh * ow);
    for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) inv[i * ow + j] = 1 / (rows[i] * cols[j]);
    return tf.tidy(() => {
      const padded = tf.pad(x, [[0, 0], [0, oh * s - h], [0, ow * s - w], [0, 0]]);
      const windows = tf.reshape(padded, [n, oh, s, ow, s, c]);
      const sums = tf.sum(windows, [2, 4]);
      return tf.mul(sums, tf.tensor4d(inv, [1, oh, ow, 1]));
    });
  }
}
