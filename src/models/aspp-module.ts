// The parallel branches of atrous spatial pyramid pooling (DeepLabV3, mmseg's ASPPModule), one per
// dilation: dilation 1 is a 1x1 ConvModule; every other dilation a 3x3 atrous conv with padding equal
// to the dilation, so all branches keep the input's size. Separable (DeepLabV3+, mmseg's
// DepthwiseSeparableASPPModule) makes the atrous branches depthwise-separable, which cuts their
// weights and work by ~9x at 2048 input channels. Branches are keyed aspp_modules.<i>.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { ModuleList } from './module-list';
import { ConvModule } from './conv-module';
import { DepthwiseSeparableConvModule } from './depthwise-separable-conv-module';

export interface ASPPModuleOptions {
  inChannels: number;
  channels: number;
  dilations: number[];
  separable: boolean;
  syncBN: boolean;
}

export class ASPPModule extends ModuleList<Module & Layer> {
  constructor(opts: ASPPModuleOptions) {
    if (opts.dilations.length === 0 || opts.dilations.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new Error(`Error in ASPPModule: dilations must be positive integers, got [${opts.dilations}]`);
    }
    super(opts.dilations.map((d): Module & Layer => {
      if (d === 1) return new ConvModule(opts.inChannels, opts.channels, 1, { syncBN: opts.syncBN });
      return opts.separable
        ? new DepthwiseSeparableConvModule(opts.inChannels, opts.channels, 3, { padding: d, dilation: d, syncBN: opts.syncBN })
        : new ConvModule(opts.inChannels, opts.channels, 3, { padding: d, dilation: d, syncBN: opts.syncBN });
    }));
  }

  /** Each branch's output, in dilation order. */
  forwardAll(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D[] {
    return tf.tidy(() => this.items.map((branch) => branch.forward(x, ctx)));
  }
}
