// The global branch of PyConvSegNet's head (iduta's GlobalPyConvBlock): adaptive average pooling to a
// bins x bins grid (9 in iduta), 1x1 conv, a four-level pyramidal convolution whose 9x9 kernel spans
// the whole grid, 1x1 conv (each with BN + ReLU), then bilinear upsampling back to the input's size.
// Keys: global_context.features.<i> (features.0 is the parameterless pool).

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';
import { ReLU } from './relu';
import { AdaptiveAvgPool2d } from './adaptive-avg-pool';
import { PyConv, pyconvLevels } from './pyconv';
import { Sequential } from './sequential';
import { forwardConvBnReluChain } from './conv-bn-relu-chain';
import { resizeBilinear } from './resize';
import type { PyConvContextOptions } from './pyconv-local-context';

export interface GlobalPyConvOptions extends PyConvContextOptions {
  bins: number;
  alignCorners: boolean;
}

export class GlobalPyConvBlock extends Module implements Layer {
  readonly features: Sequential;
  private readonly alignCorners: boolean;

  constructor(opts: GlobalPyConvOptions) {
    super();
    if (!Number.isInteger(opts.bins) || opts.bins < 1) {
      throw new Error(`Error in GlobalPyConvBlock: bins must be a positive integer, got ${opts.bins}`);
    }
    this.alignCorners = opts.alignCorners;
    const c = opts.outChannels;
    const bn = () => new BatchNorm2d(c, { sync: opts.syncBN });
    this.features = this.registerModule('features', new Sequential([
      new AdaptiveAvgPool2d(opts.bins),
      new Conv2d(opts.inChannels, c, 1, { bias: false }), bn(), new ReLU(),
      new PyConv(c, pyconvLevels(c, opts.groups)), bn(), new ReLU(),
      new Conv2d(c, c, 1, { bias: false }), bn(), new ReLU(),
    ]));
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const [, h, w] = x.shape;
      return resizeBilinear(forwardConvBnReluChain(this.features, x, ctx), h, w, this.alignCorners);
    });
  }
}
