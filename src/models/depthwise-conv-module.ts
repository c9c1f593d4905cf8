// The depthwise half of mmcv's DepthwiseSeparableConvModule: a depthwise conv (no bias, since BN
// follows) -> BN -> ReLU, children named `conv` and `bn` as in a ConvModule, so keys read
// ...depthwise_conv.conv.weight [k, k, 1, C] and ...depthwise_conv.bn.running_mean.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { DepthwiseConv2d } from './depthwise-conv2d';
import { BatchNorm2d } from './batch-norm';

export interface DepthwiseConvModuleOptions {
  padding?: number;
  dilation?: number;
  syncBN?: boolean;
}

export class DepthwiseConvModule extends Module implements Layer {
  readonly conv: DepthwiseConv2d;
  readonly bn: BatchNorm2d;

  constructor(channels: number, kernelSize: number, opts: DepthwiseConvModuleOptions = {}) {
    super();
    this.conv = this.registerModule('conv', new DepthwiseConv2d(channels, kernelSize, {
      padding: opts.padding, dilation: opts.dilation, bias: false,
    }));
    this.bn = this.registerModule('bn', new BatchNorm2d(channels, { sync: opts.syncBN }));
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => this.bn.forwardFused(this.conv.forward(x), ctx, { relu: true }));
  }
}
