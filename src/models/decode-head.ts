// What every segmentation head shares, as mmseg's BaseDecodeHead: it reads one backbone stage
// (in_index), and classifies its last feature map with Dropout2d then a 1x1 conv_seg (with bias,
// initialised normal(0, 0.01) so the initial logits are near zero and the initial loss near log K).
// An optional attention block (model.head.attention) sits between the head's final features and
// the dropout, here, so every head type gets it the same way.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module } from './module';
import { Conv2d } from './conv2d';
import { Dropout2d } from './dropout';
import { normalInit } from './init';
import { DualAttention } from './dual-attention';

export type HeadAttention = 'none' | 'dual';
export const HEAD_ATTENTIONS: readonly HeadAttention[] = ['none', 'dual'];

export interface DecodeHeadOptions {
  /** Channels of the backbone stage the head reads. */
  inChannels: number;
  /** Width of the head's hidden ConvModules. */
  channels: number;
  numClasses: number;
  /** Which backbone output to read (3 = last stage for the main head, 2 for the auxiliary one). */
  inIndex: number;
  /** Dropout2d rate before conv_seg; 0 disables it. */
  dropout: number;
  /** align_corners for every bilinear resize the head does. */
  alignCorners: boolean;
  syncBN: boolean;
  /** Attention block on the final features before dropout + conv_seg; default none. */
  attention?: HeadAttention;
}

export abstract class DecodeHead extends Module {
  readonly conv_seg: Conv2d;
  readonly dropout: Dropout2d | undefined;
  readonly attention: DualAttention | undefined;
  readonly inIndex: number;
  readonly numClasses: number;

  constructor(opts: DecodeHeadOptions) {
    super();
    this.inIndex = opts.inIndex;
    this.numClasses = opts.numClasses;
    this.conv_seg = this.registerModule('conv_seg', new Conv2d(opts.channels, opts.numClasses, 1, {
      bias: true,
      weightInit: normalInit(0.01),
    }));
    this.dropout = opts.dropout > 0 ? this.registerModule('dropout', new Dropout2d(opts.dropout)) : undefined;
    const attention = opts.attention ?? 'none';
    if (!HEAD_ATTENTIONS.includes(attention)) {
      throw new Error(`Unknown head attention '${attention}'; valid: ${HEAD_ATTENTIONS.join(', ')}`);
    }
    this.attention = attention === 'dual' ? this.registerModule('attention', new DualAttention(opts.channels)) : undefined;
  }

  /** Logits at the resolution of the chosen backbone stage. */
  abstract forward(features: tf.Tensor4D[], ctx: ForwardContext): tf.Tensor4D;

  protected input(features: tf.Tensor4D[]): tf.Tensor4D {
    const x = features[this.inIndex];
    if (x === undefined) {
      throw new Error(`Error in ${this.constructor.name}: in_index ${this.inIndex} but the backbone gave ${features.length} outputs`);
    }
    return x;
  }

  protected classify(feat: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const attended = this.attention ? this.attention.forward(feat) : feat;
      const x = this.dropout ? this.dropout.forward(attended, ctx) : attended;
      return this.conv_seg.forward(x);
    });
  }
}
