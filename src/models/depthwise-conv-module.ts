// The depthwise half of mmcv's DepthwiseSeparableConvModule: a depthwise conv (no bias, since BN
// follows) -> BN -> ReLU, children named `conv` and `bn` as in a ConvModule, so keys read
// ...depthwise_conv.conv.weight [k, k, 1, C] and ...depthwise_conv.bn.running_mean.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';

export interface DepthwiseConvModuleOptions {
  padding?: number;
  dilation?: number;
  syncBN?: boolean;
}

export class DepthwiseConvModule extends Module implements Layer {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(channels: number, kernelSize: number, opts: DepthwiseConvModuleOptions = {}) {
    super();
    this.conv = this.registerModule('conv', new Conv2d(channels, channels, kernelSize, {
      padding: opts.padding, dilation: opts.dilation, groups: channels, bias: false,
    }));
    this.bn = this.registerModule('bn', new BatchNorm2d(channels, { sync: opts.syncBN }));
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => this.bn.forwardFused(this.conv.forward(x), ctx, { relu: true }));
  }
}
