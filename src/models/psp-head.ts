// PSPNet's pyramid pooling head (Zhao et al. 2017) with mmseg's structure and names: for each pool
// scale, adaptive average pooling to scale x scale and a 1x1 ConvModule to `channels`
// (psp_modules.<i>.1), upsampled back; the input and all branches are concatenated and fused by a 3x3
// ConvModule (bottleneck), then Dropout2d and conv_seg.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { ConvModule } from './conv-module';
import { AdaptiveAvgPool2d } from './adaptive-avg-pool';
import { Sequential } from './sequential';
import { ModuleList } from './module-list';
import { resizeBilinear } from './resize';
import { DecodeHead, type DecodeHeadOptions } from './decode-head';

export interface PSPHeadOptions extends DecodeHeadOptions {
  /** Output sizes of the pyramid's pooling branches; the paper's 1, 2, 3, 6. */
  poolScales: number[];
}

export class PSPHead extends DecodeHead {
  readonly psp_modules: ModuleList<Sequential>;
  readonly bottleneck: ConvModule;
  private readonly alignCorners: boolean;

  constructor(opts: PSPHeadOptions) {
    super(opts);
    if (opts.poolScales.length === 0 || opts.poolScales.some((s) => !Number.isInteger(s) || s < 1)) {
      throw new Error(`Error in PSPHead: pool_scales must be positive integers, got [${opts.poolScales}]`);
    }
    this.alignCorners = opts.alignCorners;
    this.psp_modules = this.registerModule('psp_modules', new ModuleList(opts.poolScales.map((s) =>
      new Sequential([
        new AdaptiveAvgPool2d(s),
        new ConvModule(opts.inChannels, opts.channels, 1, { syncBN: opts.syncBN }),
      ]))));
    this.bottleneck = this.registerModule('bottleneck', new ConvModule(
      opts.inChannels + opts.poolScales.length * opts.channels, opts.channels, 3,
      { padding: 1, syncBN: opts.syncBN },
    ));
  }

  forward(features: tf.Tensor4D[], ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const x = this.input(features);
      const [, h, w] = x.shape;
      const branches = this.psp_modules.items.map((branch) =>
        resizeBilinear(branch.forward(x, ctx), h, w, this.alignCorners));
      const fused = this.bottleneck.forward(tf.concat([x, ...branches], 3), ctx);
      return this.classify(fused, ctx);
    });
  }
}
