// The local branch of PyConvSegNet's head (iduta's LocalPyConvBlock): 1x1 conv down to a quarter of
// the backbone's width, a four-level pyramidal convolution (kernels 3/5/7/9) at full resolution, 1x1
// conv to the branch's output width, each followed by BN + ReLU. Keys: local_context.layers.<i>.

import type * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';
import { ReLU } from './relu';
import { PyConv, pyconvLevels } from './pyconv';
import { Sequential } from './sequential';
import { forwardConvBnReluChain } from './conv-bn-relu-chain';

export interface PyConvContextOptions {
  inChannels: number;
  outChannels: number;
  /** Groups of the four pyramid levels; iduta's 1, 4, 8, 16. */
  groups: readonly number[];
  syncBN: boolean;
}

export class LocalPyConvBlock extends Module implements Layer {
  readonly layers: Sequential;

  constructor(opts: PyConvContextOptions) {
    super();
    const mid = opts.inChannels / 4;
    if (!Number.isInteger(mid)) {
      throw new Error(`Error in LocalPyConvBlock: input width ${opts.inChannels} is not divisible by 4`);
    }
    const bn = (c: number) => new BatchNorm2d(c, { sync: opts.syncBN });
    this.layers = this.registerModule('layers', new Sequential([
      new Conv2d(opts.inChannels, mid, 1, { bias: false }), bn(mid), new ReLU(),
      new PyConv(mid, pyconvLevels(mid, opts.groups)), bn(mid), new ReLU(),
      new Conv2d(mid, opts.outChannels, 1, { bias: false }), bn(opts.outChannels), new ReLU(),
    ]));
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return forwardConvBnReluChain(this.layers, x, ctx);
  }
}
