// nn.Conv2d(C, C, k, groups=C): one k x k filter per channel, stride 1, any dilation (DeepLabV3+'s
// atrous separable convs use 12/24/36). The weight is stored in the grouped HWIO layout
// [kh, kw, in/groups = 1, C], which is what the weight importer's plain (2, 3, 1, 0) transpose makes
// of PyTorch's [C, 1, kh, kw]; tfjs's depthwise filter [kh, kw, C, 1] holds the same values in the
// same order, so forward only reshapes. The op and its gradient are in src/backend/depthwise-conv2d.ts.

import * as tf from '@tensorflow/tfjs';
import { depthwiseConv2d } from '../backend/depthwise-conv2d';
import { Module, type Initializer, type Layer } from './module';
import { constantInit, kaimingNormalFanOut } from './init';

export interface DepthwiseConv2dOptions {
  padding?: number;
  dilation?: number;
  /** Default true, like nn.Conv2d; convs followed by BN pass false. */
  bias?: boolean;
  /** Default Kaiming normal (fan_out = k*k*C, as PyTorch computes it for a grouped weight). */
  weightInit?: Initializer;
}

export class DepthwiseConv2d extends Module implements Layer {
  readonly weight: tf.Variable<tf.Rank.R4>;
  readonly bias: tf.Variable<tf.Rank.R1> | undefined;
  readonly padding: number;
  readonly dilation: number;

  constructor(readonly channels: number, readonly kernelSize: number, opts: DepthwiseConv2dOptions = {}) {
    super();
    this.padding = opts.padding ?? 0;
    this.dilation = opts.dilation ?? 1;
    this.weight = this.registerParameter('weight', [kernelSize, kernelSize, 1, channels],
      opts.weightInit ?? kaimingNormalFanOut) as tf.Variable<tf.Rank.R4>;
    this.bias = (opts.bias ?? true)
      ? (this.registerParameter('bias', [channels], constantInit(0)) as tf.Variable<tf.Rank.R1>)
      : undefined;
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const k = this.kernelSize;
      const filter = tf.reshape(this.weight, [k, k, this.channels, 1]) as tf.Tensor4D;
      const y = depthwiseConv2d(x, filter, { padding: this.padding, dilation: this.dilation });
      return this.bias === undefined ? y : tf.add(y, this.bias);
    });
  }
}
