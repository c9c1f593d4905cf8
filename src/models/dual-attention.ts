// DANet's dual attention block (Fu et al. 2019), as an optional module after a decode head
// (model.head.attention: dual): position attention (pam) and channel attention (cam) applied in
// parallel to the head's final features and their outputs summed, DANet's fusion. Both gammas start
// at 0, so the block starts as 2x: a constant the classifier that follows absorbs. Keys
// decode_head.attention.pam.{query,key,value}_project.*, .pam.gamma.scale, .cam.gamma.scale.

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';
import { PositionAttention } from './position-attention';
import { ChannelAttention } from './channel-attention';

export class DualAttention extends Module implements Layer {
  readonly pam: PositionAttention;
  readonly cam: ChannelAttention;

  constructor(channels: number) {
    super();
    // C/8 query/key channels, DANet's (mmseg: pam_channels 64 for 512 channels).
    this.pam = this.registerModule('pam', new PositionAttention(channels, Math.max(1, Math.floor(channels / 8))));
    this.cam = this.registerModule('cam', new ChannelAttention());
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => tf.add(this.pam.forward(x), this.cam.forward(x)));
  }
}
