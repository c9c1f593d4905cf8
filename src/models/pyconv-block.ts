// PyConvResNet's residual block, iduta's PyConvBlock: a Bottleneck whose 3x3 conv2 is a pyramidal
// convolution (PyConv, children conv2_1..conv2_n) in stages 1-3, and a single 3x3 conv (plain
// `conv2`, no levels) in stage 4, where the map is too small for larger kernels to see more.
// Expansion 4, like Bottleneck; the stride sits on conv2 (and on the shortcut's max pool).

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';
import { PyConv, pyconvLevels } from './pyconv';
import type { Sequential } from './sequential';

export interface PyConvBlockSpec {
  inplanes: number;
  planes: number;
  stride: number;
  /** Dilation of every level of conv2 (output stride 8/16 trades the stage's stride for it). */
  dilation: number;
  /** Groups of each pyramid level, smallest kernel first; one entry makes conv2 a plain 3x3 conv. */
  groups: readonly number[];
  /** The shortcut: [MaxPool2d 3x3,] Conv2d 1x1, BatchNorm2d. */
  downsample?: Sequential;
  syncBN: boolean;
  zeroInitResidual: boolean;
}

export class PyConvBlock extends Module implements Layer {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: PyConv | Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | undefined;

  constructor(spec: PyConvBlockSpec) {
    super();
    const { inplanes, planes, stride, dilation, groups, syncBN } = spec;
    const out = planes * PyConvBlock.expansion;
    this.conv1 = this.registerModule('conv1', new Conv2d(inplanes, planes, 1, { bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes, { sync: syncBN }));
    this.conv2 = this.registerModule('conv2', groups.length === 1
      ? new Conv2d(planes, planes, 3, { stride, dilation, padding: dilation, groups: groups[0], bias: false })
      : new PyConv(planes, pyconvLevels(planes, groups), { stride, dilation }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes, { sync: syncBN }));
    this.conv3 = this.registerModule('conv3', new Conv2d(planes, out, 1, { bias: false }));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(out, {
      sync: syncBN, gammaInit: spec.zeroInitResidual ? 0 : 1,
    }));
    this.downsample = spec.downsample && this.registerModule('downsample', spec.downsample);
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      let out = this.bn1.forwardFused(this.conv1.forward(x), ctx, { relu: true });
      out = this.bn2.forwardFused(this.conv2.forward(out), ctx, { relu: true });
      const identity = this.downsample ? this.downsample.forward(x, ctx) : x;
      return this.bn3.forwardFused(this.conv3.forward(out), ctx, { relu: true, residual: identity });
    });
  }
}
