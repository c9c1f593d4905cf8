// ResNet-18/34's block as mmseg builds it: conv1 3x3 carries the stride and the stage's dilation,
// conv2 is a plain 3x3 (padding 1, no dilation; mmseg's BasicBlock does not dilate it, and we follow
// mmseg so its checkpoints reproduce their numbers).

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';
import type { Sequential } from './sequential';
import type { ResBlockSpec } from './res-block';

export class BasicBlock extends Module implements Layer {
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | undefined;

  constructor(spec: ResBlockSpec) {
    super();
    const { inplanes, planes, stride, dilation, syncBN } = spec;
    this.conv1 = this.registerModule('conv1', new Conv2d(inplanes, planes, 3, {
      stride, padding: dilation, dilation, bias: false,
    }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes, { sync: syncBN }));
    this.conv2 = this.registerModule('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes, {
      sync: syncBN, gammaInit: spec.zeroInitResidual ? 0 : 1,
    }));
    this.downsample = spec.downsample && this.registerModule('downsample', spec.downsample);
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const out = this.bn1.forwardFused(this.conv1.forward(x), ctx, { relu: true });
      const identity = this.downsample ? this.downsample.forward(x, ctx) : x;
      return this.bn2.forwardFused(this.conv2.forward(out), ctx, { relu: true, residual: identity });
    });
  }
}
