// DANet's channel attention module (Fu et al. 2019; mmseg's CAM): every channel becomes a softmax-
// weighted sum of all channels, weighted by dissimilarity. With X the [HW, C] features,
//   E = X^T X (C x C),  A = softmax over c' of (max_c' E[c, c'] - E[c, c']),  out = gamma * X A^T + x,
// gamma (gamma.scale) starting at 0. Subtracting the row maximum shifts each softmax row by a
// constant, which softmax ignores, so A = softmax(-E) exactly (tf.softmax subtracts its own maximum
// for stability), and the max contributes nothing to the gradient. No parameters besides gamma.

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';
import { Scale } from './scale';

export class ChannelAttention extends Module implements Layer {
  readonly gamma: Scale;

  constructor() {
    super();
    this.gamma = this.registerModule('gamma', new Scale(0));
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [n, h, w, c] = x.shape;
      const flat = tf.reshape(x, [n, h * w, c]) as tf.Tensor3D;
      // X^T X as (X^T)(X^T)^T: the wasm matmul's transposeA path is ~15x slower than transposeB.
      const t = tf.transpose(flat, [0, 2, 1]);
      const energy = tf.matMul(t, t, false, true);
      const attention = tf.softmax(tf.neg(energy));
      const out = tf.reshape(tf.matMul(flat, attention, false, true), [n, h, w, c]) as tf.Tensor4D;
      return tf.add(this.gamma.forward(out), x);
    });
  }
}
