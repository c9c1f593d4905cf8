// DANet's position attention module (Fu et al. 2019; mmseg's PAM): every position's features become
// a softmax-weighted sum of every position's value features, weighted by query-key similarity:
//   q, k = 1x1 convs to C/8 channels; v = 1x1 conv to C; A = softmax_j(q_i . k_j) over the H*W positions
//   out = gamma * (A v) + x, gamma (gamma.scale) starting at 0.
// No 1/sqrt(d) scaling, as in DANet. Keys follow mmseg: query_project / key_project / value_project
// (plain convs with bias) and gamma.scale. The affinity is [N, HW, HW]: memory grows with the square
// of the feature map's area, so put it on a stride-8 map, not a stride-4 one, where that matters.

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { Scale } from './scale';

export class PositionAttention extends Module implements Layer {
  readonly query_project: Conv2d;
  readonly key_project: Conv2d;
  readonly value_project: Conv2d;
  readonly gamma: Scale;

  constructor(readonly channels: number, readonly keyChannels: number) {
    super();
    this.query_project = this.registerModule('query_project', new Conv2d(channels, keyChannels, 1));
    this.key_project = this.registerModule('key_project', new Conv2d(channels, keyChannels, 1));
    this.value_project = this.registerModule('value_project', new Conv2d(channels, channels, 1));
    this.gamma = this.registerModule('gamma', new Scale(0));
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [n, h, w, c] = x.shape;
      const q = tf.reshape(this.query_project.forward(x), [n, h * w, this.keyChannels]) as tf.Tensor3D;
      const k = tf.reshape(this.key_project.forward(x), [n, h * w, this.keyChannels]) as tf.Tensor3D;
      const v = tf.reshape(this.value_project.forward(x), [n, h * w, c]) as tf.Tensor3D;
      const attention = tf.softmax(tf.matMul(q, k, false, true));
      const context = tf.reshape(tf.matMul(attention, v), [n, h, w, c]) as tf.Tensor4D;
      return tf.add(this.gamma.forward(context), x);
    });
  }
}
