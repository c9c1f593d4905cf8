// 2-D convolution with PyTorch's geometry (symmetric zero padding, stride, dilation), weights HWIO.
//
// Why not tf.conv2d(..., dilations): tfjs registers no gradient for a dilated Conv2D on any backend
// (its Conv2D gradient asserts dilation 1). An atrous convolution is, exactly, an ordinary valid
// convolution applied to each of the d*d phase sub-grids of the zero-padded input (the rows and
// columns congruent to (a, b) mod d), with the results interleaved back. That is what
// spaceToBatchND -> conv2d -> batchToSpaceND computes. We do the same split and interleave with
// reshapes and two 3-D transposes each way instead of those ops: on wasm, spaceToBatchND's single
// rank-6 transpose takes the backend's generic path and measured 12-25x slower than this (e.g. 355 vs
// 30 ms for a 4x20x20x512 input). All of it is plain ops with gradients, so dilated ResNet stages
// train on every backend, and the convolution in the middle is undilated and takes the fast kernels.

import * as tf from '@tensorflow/tfjs';
import { conv2d as dilatedConv2d } from '../backend/conv2d';
import { depthwiseConv2d } from '../backend/depthwise-conv2d';
import { Module, type Initializer, type Layer } from './module';
import { constantInit, kaimingNormalFanOut } from './init';

export interface ConvGeometry {
  stride: number;
  padding: number;
  dilation: number;
}

/** PyTorch's output size: floor((size + 2p - d(k-1) - 1) / s) + 1. */
export function convOutputSize(size: number, kernel: number, g: ConvGeometry): number {
  return Math.floor((size + 2 * g.padding - g.dilation * (kernel - 1) - 1) / g.stride) + 1;
}

/** nn.functional.conv2d semantics on NHWC input with an HWIO filter (no bias). */
export function conv2dTorch(x: tf.Tensor4D, filter: tf.Tensor4D, g: ConvGeometry): tf.Tensor4D {
  const [, h, w, cin] = x.shape;
  const [kh, kw, fin] = filter.shape;
  if (fin !== cin) {
    throw new Error(`Error in conv2dTorch: input has ${cin} channels, filter expects ${fin}`);
  }
  const outH = convOutputSize(h, kh, g);
  const outW = convOutputSize(w, kw, g);
  if (outH < 1 || outW < 1) {
    throw new Error(`Error in conv2dTorch: input ${h}x${w} too small for kernel ${kh}x${kw} with ` +
      `padding ${g.padding}, dilation ${g.dilation}`);
  }
  const p = g.padding;
  const d = g.dilation;
  // A 1x1 kernel has no taps to spread apart, so its dilation changes nothing.
  if (d === 1 || (kh === 1 && kw === 1)) {
    return tf.conv2d(x, filter, g.stride, p === 0 ? 'valid' : p);
  }
  if (g.stride !== 1) {
    // Not needed by any model here (dilated ResNet stages have stride 1); refuse rather than guess.
    throw new Error(`Error in conv2dTorch: dilation ${d} with stride ${g.stride} is not supported`);
  }
  // tfjs has no gradient for a dilated Conv2D; src/backend's conv2d brings one (our wasm kernels with
  // dilations, or the zero-spread filter elsewhere).
  return dilatedConv2d(x, filter, { stride: 1, padding: p === 0 ? 'valid' : p, dilation: d });
}

/**
 * nn.functional.conv2d with `groups`: input channel slice i is convolved with filter slice i (the
 * filter is HWIO [kh, kw, in/groups, out], out channels grouped in order), results concatenated.
 *
 * tfjs has no grouped convolution. Of the exact formulations we measured the two whose gradients run
 * on every backend here (tfjs wasm, PyConvResNet-50 shapes at 128x128 input, batch 4, forward plus
 * both gradients): one convolution per group on its channel slice, concatenated, against one dense
 * convolution with a block-diagonal filter built from the grouped one. Splitting was as fast or faster
 * everywhere and far faster on wide layers, where the dense form pays the zero blocks: stage 3's
 * 5x5/groups 4 (256 -> 128) 165 vs 490 ms, the head's 9x9/groups 16 (512 -> 128) 217 vs 2746 ms;
 * stage 1's 9x9/groups 16 (64 -> 16) 247 vs 268 ms. Each per-group convolution goes through
 * conv2dTorch, so stride and dilation work as without groups. Depthwise convolutions (groups = in =
 * out channels, stride 1) take src/backend's depthwise op instead, whose gradient is our own.
 */
export function groupedConv2dTorch(x: tf.Tensor4D, filter: tf.Tensor4D, g: ConvGeometry, groups: number): tf.Tensor4D {
  if (groups === 1) return conv2dTorch(x, filter, g);
  const cin = x.shape[3];
  const [, , fin, cout] = filter.shape;
  if (!Number.isInteger(groups) || groups < 1 || cin % groups !== 0 || cout % groups !== 0) {
    throw new Error(`Error in groupedConv2dTorch: groups ${groups} must divide input channels ${cin} and output channels ${cout}`);
  }
  if (fin * groups !== cin) {
    throw new Error(`Error in groupedConv2dTorch: input has ${cin} channels, filter expects ${fin} per group x ${groups} groups`);
  }
  if (groups === cin && cout === cin && g.stride === 1) {
    // Depthwise (DeepLabV3+'s separable convs): one kernel with a gradient of its own, where the split
    // would run C one-channel convolutions. [kh, kw, 1, C] and tfjs's [kh, kw, C, 1] hold the same order.
    const [kh, kw] = filter.shape;
    return tf.tidy(() => depthwiseConv2d(x, tf.reshape(filter, [kh, kw, cin, 1]), { padding: g.padding, dilation: g.dilation }));
  }
  return tf.tidy(() => {
    const xs = tf.split(x, groups, 3) as tf.Tensor4D[];
    const ws = tf.split(filter, groups, 3) as tf.Tensor4D[];
    return tf.concat(xs.map((xi, i) => conv2dTorch(xi, ws[i], g)), 3);
  });
}

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  /** nn.Conv2d's groups: in and out channels split into this many independent convolutions. */
  groups?: number;
  /** Default true, like nn.Conv2d; convs followed by BN pass false. */
  bias?: boolean;
  /** Default Kaiming normal (fan_out, relu), as mmcv initialises segmentation models. */
  weightInit?: Initializer;
}

/**
 * nn.Conv2d: parameters `weight` [kh, kw, in/groups, out] (PyTorch's [out, in/groups, kh, kw]
 * transposed (2, 3, 1, 0)) and optional `bias` [out].
 */
export class Conv2d extends Module implements Layer {
  readonly weight: tf.Variable<tf.Rank.R4>;
  readonly bias: tf.Variable<tf.Rank.R1> | undefined;
  readonly geometry: ConvGeometry;
  readonly groups: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    opts: Conv2dOptions = {},
  ) {
    super();
    this.geometry = { stride: opts.stride ?? 1, padding: opts.padding ?? 0, dilation: opts.dilation ?? 1 };
    this.groups = opts.groups ?? 1;
    if (!Number.isInteger(this.groups) || this.groups < 1 || inChannels % this.groups !== 0 ||
        outChannels % this.groups !== 0) {
      throw new Error(`Error in Conv2d: groups ${this.groups} must divide in_channels ${inChannels} and ` +
        `out_channels ${outChannels}`);
    }
    this.weight = this.registerParameter(
      'weight',
      [kernelSize, kernelSize, inChannels / this.groups, outChannels],
      opts.weightInit ?? kaimingNormalFanOut,
    ) as tf.Variable<tf.Rank.R4>;
    this.bias = (opts.bias ?? true)
      ? (this.registerParameter('bias', [outChannels], constantInit(0)) as tf.Variable<tf.Rank.R1>)
      : undefined;
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const y = groupedConv2dTorch(x, this.weight, this.geometry, this.groups);
      return this.bias === undefined ? y : tf.add(y, this.bias);
    });
  }
}
