// Pyramidal convolution (Duta et al. 2020, "Pyramidal Convolution: Rethinking Convolutional Neural
// Networks for Visual Recognition"): several convolutions of growing kernel size over the same input,
// each with more groups the larger its kernel so the levels cost about the same, outputs concatenated
// along channels. Levels are children conv2_1, conv2_2, ... as in iduta's PyConv2/3/4, which sit at a
// PyConvBlock's `conv2`, so keys read backbone.layer1.0.conv2.conv2_4.weight.

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';

export interface PyConvLevel {
  kernel: number;
  groups: number;
  /** Output channels of this level. */
  channels: number;
}

/**
 * iduta's split of `planes` output channels over a pyramid of 2, 3 or 4 levels (PyConv2: 1/2 each;
 * PyConv3: 1/4, 1/4, 1/2; PyConv4: 1/4 each), kernels 3, 5, 7, 9 from the smallest level up.
 */
export function pyconvLevels(planes: number, groups: readonly number[]): PyConvLevel[] {
  const shares: Record<number, number[]> = { 2: [2, 2], 3: [4, 4, 2], 4: [4, 4, 4, 4] };
  const share = shares[groups.length];
  if (share === undefined) {
    throw new Error(`Error in PyConv: a pyramid has 2, 3 or 4 levels, got ${groups.length} groups [${groups}]`);
  }
  return share.map((s, i) => {
    if (planes % s !== 0) throw new Error(`Error in PyConv: ${planes} output channels do not split into 1/${s}`);
    return { kernel: 3 + 2 * i, groups: groups[i], channels: planes / s };
  });
}

export interface PyConvOptions {
  stride?: number;
  /** Spacing of every level's taps; each level's padding is dilation * (kernel // 2), keeping the size. */
  dilation?: number;
}

export class PyConv extends Module implements Layer {
  readonly levels: Conv2d[];

  constructor(readonly inChannels: number, levels: readonly PyConvLevel[], opts: PyConvOptions = {}) {
    super();
    const stride = opts.stride ?? 1;
    const dilation = opts.dilation ?? 1;
    this.levels = levels.map((l, i) => {
      if (inChannels % l.groups !== 0 || l.channels % l.groups !== 0) {
        throw new Error(`Error in PyConv: level ${i + 1} (${l.kernel}x${l.kernel}) has groups ${l.groups}, which must ` +
          `divide its ${inChannels} input and ${l.channels} output channels`);
      }
      return this.registerModule(`conv2_${i + 1}`, new Conv2d(inChannels, l.channels, l.kernel, {
        stride, dilation, padding: dilation * Math.floor(l.kernel / 2), groups: l.groups, bias: false,
      }));
    });
  }

  get outChannels(): number {
    return this.levels.reduce((n, c) => n + c.outChannels, 0);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => tf.concat(this.levels.map((c) => c.forward(x)), 3));
  }
}
