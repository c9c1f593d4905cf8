// Channel dropout (PyTorch's Dropout2d, which mmseg's decode heads apply before conv_seg): whole
// feature maps are zeroed per (sample, channel) and survivors scaled by 1/(1-p).
//
// The [N, 1, 1, C] mask is drawn in JS from our own Rng keyed by (ctx.seed, this module's path), so
// one training step's masks are reproducible from the step's seed alone, identical on every backend,
// and two dropout layers in one model never share a mask. (tf.dropout's seeded path would also work,
// but treats seed 0 as "unseeded" and ties the stream to tfjs's internal generator.)

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Rng, keyOf } from '../util/rng';

export class Dropout2d extends Module implements Layer {
  constructor(readonly rate: number) {
    super();
    if (!(rate >= 0 && rate < 1)) throw new Error(`Error in Dropout2d: rate must be in [0, 1), got ${rate}`);
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    if (!ctx.training || this.rate === 0) return x;
    const [n, , , c] = x.shape;
    const rng = new Rng(ctx.seed, keyOf(this.path));
    const keep = 1 / (1 - this.rate);
    const mask = new Float32Array(n * c);
    for (let i = 0; i < mask.length; i++) mask[i] = rng.next() < this.rate ? 0 : keep;
    return tf.tidy(() => tf.mul(x, tf.tensor4d(mask, [n, 1, 1, c])));
  }
}
