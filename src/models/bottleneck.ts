// ResNet-50/101/152's block, 'pytorch' style as in torchvision and mmseg: 1x1 reduce, 3x3 with the
// stride and the stage's dilation, 1x1 expand by 4. (The 'caffe' style strides the first 1x1.)

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';
import type { Sequential } from './sequential';
import type { ResBlockSpec } from './res-block';

export class Bottleneck extends Module implements Layer {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  /** A 3x3 Conv2d here; PyConvBlock puts a pyramidal convolution in its place. */
  readonly conv2: Module & Layer;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | undefined;

  /** `conv2` replaces the 3x3 conv (planes -> planes with the spec's stride and dilation). */
  constructor(spec: ResBlockSpec, conv2?: Module & Layer) {
    super();
    const { inplanes, planes, stride, dilation, syncBN } = spec;
    const out = planes * Bottleneck.expansion;
    this.conv1 = this.registerModule('conv1', new Conv2d(inplanes, planes, 1, { bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes, { sync: syncBN }));
    this.conv2 = this.registerModule('conv2', conv2 ?? new Conv2d(planes, planes, 3, {
      stride, padding: dilation, dilation, bias: false,
    }));
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
      out = this.bn2.forwardFused(this.conv2.forward(out, ctx), ctx, { relu: true });
      const identity = this.downsample ? this.downsample.forward(x, ctx) : x;
      return this.bn3.forwardFused(this.conv3.forward(out), ctx, { relu: true, residual: identity });
    });
  }
}
