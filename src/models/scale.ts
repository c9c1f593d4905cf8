// mmcv's Scale: one learnable scalar `scale` that multiplies its input. DANet's attention modules
// start it at 0 so each module begins as the identity and learns how much attention to mix in.

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';
import { constantInit } from './init';

export class Scale extends Module implements Layer {
  readonly scale: tf.Variable<tf.Rank.R1>;

  constructor(initValue = 1) {
    super();
    this.scale = this.registerParameter('scale', [1], constantInit(initValue)) as tf.Variable<tf.Rank.R1>;
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => tf.mul(x, this.scale));
  }
}
