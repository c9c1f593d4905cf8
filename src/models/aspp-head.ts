// DeepLabV3's head (Chen et al. 2017; mmseg's ASPPHead), and the encoder half of DeepLabV3+'s:
// image pooling (global average pool + 1x1 ConvModule, upsampled back: image_pool.1), the ASPP
// branches (aspp_modules.<i>), all concatenated and fused by a 3x3 bottleneck, then Dropout2d and
// conv_seg. With `separable` (DeepLabV3+) the atrous branches and the bottleneck are
// depthwise-separable, as mmseg's DepthwiseSeparableASPPHead makes them.
//
// Default dilations follow the output stride: (1, 12, 24, 36) at 8 and (1, 6, 12, 18) at 16, the
// DeepLabV3 paper's rates, which keep the branches' fields of view the same in input pixels.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { ConvModule } from './conv-module';
import { DepthwiseSeparableConvModule } from './depthwise-separable-conv-module';
import { AdaptiveAvgPool2d } from './adaptive-avg-pool';
import { Sequential } from './sequential';
import { ASPPModule } from './aspp-module';
import { resizeBilinear } from './resize';
import { DecodeHead, type DecodeHeadOptions } from './decode-head';

/** ASPP dilations for an output stride: the 1x1 branch, then the three atrous rates. */
export function defaultASPPDilations(outputStride: number): number[] {
  if (outputStride === 8) return [1, 12, 24, 36];
  if (outputStride === 16) return [1, 6, 12, 18];
  throw new Error(`Error in ASPP: no default dilations for output stride ${outputStride} (8 or 16); give head.dilations`);
}

export interface ASPPHeadOptions extends DecodeHeadOptions {
  dilations: number[];
  /** Depthwise-separable atrous branches and bottleneck (DeepLabV3+). */
  separable?: boolean;
}

export class ASPPHead extends DecodeHead {
  readonly image_pool: Sequential;
  readonly aspp_modules: ASPPModule;
  readonly bottleneck: Module & Layer;
  protected readonly alignCorners: boolean;

  constructor(opts: ASPPHeadOptions) {
    super(opts);
    const separable = opts.separable ?? false;
    this.alignCorners = opts.alignCorners;
    this.image_pool = this.registerModule('image_pool', new Sequential([
      new AdaptiveAvgPool2d(1),
      new ConvModule(opts.inChannels, opts.channels, 1, { syncBN: opts.syncBN }),
    ]));
    this.aspp_modules = this.registerModule('aspp_modules', new ASPPModule({
      inChannels: opts.inChannels, channels: opts.channels, dilations: opts.dilations, separable, syncBN: opts.syncBN,
    }));
    const fused = (opts.dilations.length + 1) * opts.channels;
    this.bottleneck = this.registerModule('bottleneck', separable
      ? new DepthwiseSeparableConvModule(fused, opts.channels, 3, { padding: 1, syncBN: opts.syncBN })
      : new ConvModule(fused, opts.channels, 3, { padding: 1, syncBN: opts.syncBN }));
  }

  /** The fused ASPP features at the input stage's resolution. */
  protected asppFeatures(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const [, h, w] = x.shape;
      const pooled = resizeBilinear(this.image_pool.forward(x, ctx), h, w, this.alignCorners);
      return this.bottleneck.forward(tf.concat([pooled, ...this.aspp_modules.forwardAll(x, ctx)], 3), ctx);
    });
  }

  forward(features: tf.Tensor4D[], ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => this.classify(this.asppFeatures(this.input(features), ctx), ctx));
  }
}
