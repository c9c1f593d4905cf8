// mmcv's ConvModule as mmseg's heads use it: conv (no bias, since BN follows) -> BN -> ReLU, with the
// children named `conv` and `bn` so keys read decode_head.bottleneck.conv.weight / .bn.running_var.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';

export interface ConvModuleOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  /** SyncBN when true (model.norm = syncbn). */
  syncBN?: boolean;
}

export class ConvModule extends Module implements Layer {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(inChannels: number, outChannels: number, kernelSize: number, opts: ConvModuleOptions = {}) {
    super();
    this.conv = this.registerModule('conv', new Conv2d(inChannels, outChannels, kernelSize, {
      stride: opts.stride,
      padding: opts.padding,
      dilation: opts.dilation,
      bias: false,
    }));
    this.bn = this.registerModule('bn', new BatchNorm2d(outChannels, { sync: opts.syncBN }));
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => this.bn.forwardFused(this.conv.forward(x), ctx, { relu: true }));
  }
}
