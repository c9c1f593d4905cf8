// mmcv's DepthwiseSeparableConvModule as DeepLabV3+ uses it: a k x k depthwise ConvModule
// (depthwise_conv: conv, BN, ReLU on each channel alone) then a 1x1 ConvModule (pointwise_conv) that
// mixes channels. With BN and ReLU after both halves, as mmcv does when the depthwise half inherits
// the module's norm and activation.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { ConvModule } from './conv-module';
import { DepthwiseConvModule } from './depthwise-conv-module';

export interface DepthwiseSeparableConvModuleOptions {
  padding?: number;
  dilation?: number;
  syncBN?: boolean;
}

export class DepthwiseSeparableConvModule extends Module implements Layer {
  readonly depthwise_conv: DepthwiseConvModule;
  readonly pointwise_conv: ConvModule;

  constructor(inChannels: number, outChannels: number, kernelSize: number, opts: DepthwiseSeparableConvModuleOptions = {}) {
    super();
    this.depthwise_conv = this.registerModule('depthwise_conv', new DepthwiseConvModule(inChannels, kernelSize, opts));
    this.pointwise_conv = this.registerModule('pointwise_conv', new ConvModule(inChannels, outChannels, 1, { syncBN: opts.syncBN }));
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => this.pointwise_conv.forward(this.depthwise_conv.forward(x, ctx), ctx));
  }
}
