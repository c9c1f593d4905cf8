// mmseg's EncoderDecoder: backbone -> decode head (-> auxiliary head while training), logits resized
// to the input's size. Module names are mmseg's (backbone, decode_head, auxiliary_head).

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module } from './module';
import type { DecodeHead } from './decode-head';
import { resizeBilinear } from './resize';

/** A feature extractor returning one NHWC map per stage; outChannels lists their widths. */
export interface Backbone extends Module {
  readonly outChannels: readonly number[];
  /**
   * Child module names (relative to the backbone) of the stem (index 0) and of stages 1..4, so that
   * training can freeze mmseg's frozen_stages by name.
   */
  readonly stageModules: readonly (readonly string[])[];
  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D[];
}

export interface ModelOutput {
  /** Logits [N, H, W, numClasses] at the input's H x W. */
  out: tf.Tensor4D;
  /** Auxiliary-head logits at the input's H x W; only while training and when the model has one. */
  aux?: tf.Tensor4D;
}

export interface EncoderDecoderParts {
  backbone: Backbone;
  decodeHead: DecodeHead;
  auxiliaryHead?: DecodeHead;
  /** align_corners of the final resize to the input size (mmseg takes the decode head's). */
  alignCorners: boolean;
}

export class EncoderDecoder extends Module {
  readonly backbone: Backbone;
  readonly decode_head: DecodeHead;
  readonly auxiliary_head: DecodeHead | undefined;
  readonly alignCorners: boolean;
  readonly numClasses: number;

  constructor(parts: EncoderDecoderParts) {
    super();
    this.backbone = this.registerModule('backbone', parts.backbone);
    this.decode_head = this.registerModule('decode_head', parts.decodeHead);
    this.auxiliary_head = parts.auxiliaryHead && this.registerModule('auxiliary_head', parts.auxiliaryHead);
    this.alignCorners = parts.alignCorners;
    this.numClasses = parts.decodeHead.numClasses;
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): ModelOutput {
    const [, h, w] = x.shape;
    return tf.tidy(() => {
      const features = this.backbone.forward(x, ctx);
      const out = resizeBilinear(this.decode_head.forward(features, ctx), h, w, this.alignCorners);
      if (!ctx.training || this.auxiliary_head === undefined) return { out };
      const aux = resizeBilinear(this.auxiliary_head.forward(features, ctx), h, w, this.alignCorners);
      return { out, aux };
    });
  }
}
