// Where PyConvSegNet's head joins its branches (iduta's MergeLocalGlobal): the local and global maps
// concatenated, fused by a 3x3 conv + BN + ReLU. Keys: merge_context.features.{0,1}.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';
import { ReLU } from './relu';
import { Sequential } from './sequential';
import { forwardConvBnReluChain } from './conv-bn-relu-chain';

export class MergeLocalGlobal extends Module {
  readonly features: Sequential;

  constructor(inChannels: number, outChannels: number, syncBN: boolean) {
    super();
    this.features = this.registerModule('features', new Sequential([
      new Conv2d(inChannels, outChannels, 3, { padding: 1, bias: false }),
      new BatchNorm2d(outChannels, { sync: syncBN }),
      new ReLU(),
    ]));
  }

  forward(local: tf.Tensor4D, global: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => forwardConvBnReluChain(this.features, tf.concat([local, global], 3), ctx));
  }
}
