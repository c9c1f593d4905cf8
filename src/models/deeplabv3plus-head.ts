// DeepLabV3+'s head (Chen et al. 2018; mmseg's DepthwiseSeparableASPPHead): the separable ASPP
// encoder on the last stage, then a decoder that recovers detail from stage 1 (features[0], stride
// 4): c1_bottleneck reduces it to c1_channels (48, few enough that the low-level features do not
// outweigh the ASPP ones), the ASPP output is upsampled to stage 1's size and concatenated with it,
// and two 3x3 depthwise-separable ConvModules (sep_bottleneck.0, .1) fuse them before Dropout2d and
// conv_seg. Logits come out at stride 4.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { ConvModule } from './conv-module';
import { DepthwiseSeparableConvModule } from './depthwise-separable-conv-module';
import { Sequential } from './sequential';
import { resizeBilinear } from './resize';
import { ASPPHead, type ASPPHeadOptions } from './aspp-head';

export interface DeepLabV3PlusHeadOptions extends Omit<ASPPHeadOptions, 'separable'> {
  /** Channels of the low-level stage (features[0]). */
  c1InChannels: number;
  /** Width c1_bottleneck reduces it to; DeepLabV3+'s 48. */
  c1Channels: number;
}

export class DeepLabV3PlusHead extends ASPPHead {
  readonly c1_bottleneck: ConvModule;
  readonly sep_bottleneck: Sequential;

  constructor(opts: DeepLabV3PlusHeadOptions) {
    super({ ...opts, separable: true });
    if (!Number.isInteger(opts.c1Channels) || opts.c1Channels < 1) {
      throw new Error(`Error in DeepLabV3PlusHead: c1_channels must be a positive integer, got ${opts.c1Channels}`);
    }
    this.c1_bottleneck = this.registerModule('c1_bottleneck', new ConvModule(opts.c1InChannels, opts.c1Channels, 1, { syncBN: opts.syncBN }));
    this.sep_bottleneck = this.registerModule('sep_bottleneck', new Sequential([
      new DepthwiseSeparableConvModule(opts.channels + opts.c1Channels, opts.channels, 3, { padding: 1, syncBN: opts.syncBN }),
      new DepthwiseSeparableConvModule(opts.channels, opts.channels, 3, { padding: 1, syncBN: opts.syncBN }),
    ]));
  }

  override forward(features: tf.Tensor4D[], ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const aspp = this.asppFeatures(this.input(features), ctx);
      const low = features[0];
      if (low === undefined) throw new Error('Error in DeepLabV3PlusHead: the backbone gave no stage-1 features');
      const c1 = this.c1_bottleneck.forward(low, ctx);
      const [, h, w] = c1.shape;
      const fused = tf.concat([resizeBilinear(aspp, h, w, this.alignCorners), c1], 3);
      return this.classify(this.sep_bottleneck.forward(fused, ctx), ctx);
    });
  }
}
