// The auxiliary FCN head mmseg's PSPNet configs attach to stage 3: num_convs 3x3 ConvModules
// (convs.<i>; one by default) then Dropout2d and conv_seg. Its loss only shapes the backbone's
// features during training; inference ignores it.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { ConvModule } from './conv-module';
import { Sequential } from './sequential';
import { DecodeHead, type DecodeHeadOptions } from './decode-head';

export interface FCNHeadOptions extends DecodeHeadOptions {
  numConvs?: number;
}

export class FCNHead extends DecodeHead {
  readonly convs: Sequential;

  constructor(opts: FCNHeadOptions) {
    super(opts);
    const n = opts.numConvs ?? 1;
    if (!Number.isInteger(n) || n < 1) throw new Error(`Error in FCNHead: num_convs must be >= 1, got ${n}`);
    const convs: ConvModule[] = [];
    for (let i = 0; i < n; i++) {
      convs.push(new ConvModule(i === 0 ? opts.inChannels : opts.channels, opts.channels, 3, {
        padding: 1, syncBN: opts.syncBN,
      }));
    }
    this.convs = this.registerModule('convs', new Sequential(convs));
  }

  forward(features: tf.Tensor4D[], ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => this.classify(this.convs.forward(this.input(features), ctx), ctx));
  }
}
