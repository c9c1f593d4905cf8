// PyConvResNet (Duta et al. 2020), the backbone of iduta's PyConvSegNet, with iduta's module names
// (backbone.conv1, backbone.bn1, backbone.layer1.0.conv2.conv2_1, backbone.layer1.0.downsample.1 ...).
//
// It differs from ResNet in three ways. Each block's 3x3 conv is a pyramid of kernels 3/5/7/9
// (stage 1: four levels, groups 1/4/8/16; stage 2: three, 1/4/8; stage 3: two, 1/4; stage 4: one plain
// 3x3). The stem is only conv1/bn1/ReLU: there is no max pool after it, stage 1 strides instead. And
// the shortcut of each stage's first block is max pool 3x3 (stride = the stage's) -> 1x1 conv -> BN
// (downsample.0/.1/.2), so the 1x1 conv never discards three of every four pixels.
//
// Output stride 8/16 as iduta's build_backbone_layers makes it: a dilated stage's convs lose their
// stride and take dilation 2 (and 4 for stage 4 at OS 8) with padding dilation * (k // 2) on every
// level; the shortcut's max pool stays, at stride 1 (so it still takes a 3x3 maximum). iduta dilates
// every block fully; contractDilation (the first block at half the dilation, as mmseg's configs do for
// ResNet) is offered for symmetry with ResNet. base_channels scales every width as in ResNet.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';
import { MaxPool2d } from './max-pool';
import { Sequential } from './sequential';
import { PyConvBlock } from './pyconv-block';
import { pyconvLevels } from './pyconv';

export type PyConvResNetDepth = 50 | 101 | 152;
export type PyConvOutputStride = 8 | 16 | 32;

const BLOCKS: Record<PyConvResNetDepth, [number, number, number, number]> = {
  50: [3, 4, 6, 3],
  101: [3, 4, 23, 3],
  152: [3, 8, 36, 3],
};

/** Per-stage (stride, dilation) for each output stride: every stage strides 2 at output stride 32. */
const STAGES: Record<PyConvOutputStride, { strides: number[]; dilations: number[] }> = {
  8: { strides: [2, 2, 1, 1], dilations: [1, 1, 2, 4] },
  16: { strides: [2, 2, 2, 1], dilations: [1, 1, 1, 2] },
  32: { strides: [2, 2, 2, 2], dilations: [1, 1, 1, 1] },
};

export const PYCONV_RESNET_DEPTHS: readonly PyConvResNetDepth[] = [50, 101, 152];
export const PYCONV_OUTPUT_STRIDES: readonly PyConvOutputStride[] = [8, 16, 32];
/** iduta's groups per pyramid level, stage by stage (the level count per stage is fixed: 4, 3, 2, 1). */
export const PYCONV_GROUPS: readonly (readonly number[])[] = [[1, 4, 8, 16], [1, 4, 8], [1, 4], [1]];

export interface PyConvResNetOptions {
  depth: PyConvResNetDepth;
  outputStride?: PyConvOutputStride;
  /** Width of stage 1's pyramid and of the stem; iduta's 64. */
  baseChannels?: number;
  inChannels?: number;
  syncBN?: boolean;
  /** Groups of each stage's pyramid levels (default PYCONV_GROUPS); narrow test models need fewer. */
  groups?: readonly (readonly number[])[];
  contractDilation?: boolean;
  zeroInitResidual?: boolean;
}

/**
 * Why `groups` cannot build a network of `base` channels, or null when it can. The message names the
 * stage and level (1-based) so a config error can point at model.backbone.pyconv_groups[stage-1].
 */
export function pyconvGroupsProblem(base: number, groups: readonly (readonly number[])[]): string | null {
  if (groups.length !== 4) return `expected 4 stages of groups, got ${groups.length}`;
  for (let s = 0; s < 4; s++) {
    const g = groups[s];
    if (!Array.isArray(g) || g.length !== PYCONV_GROUPS[s].length) {
      return `stage ${s + 1} has ${PYCONV_GROUPS[s].length} pyramid level(s), got groups [${g}]`;
    }
    const planes = base * 2 ** s;
    const levels = g.length === 1 ? [{ channels: planes, groups: g[0] }] : pyconvLevelsOrNull(planes, g);
    if (levels === null) return `stage ${s + 1}: ${planes} channels do not split into its pyramid levels`;
    for (let l = 0; l < levels.length; l++) {
      const { channels, groups: n } = levels[l];
      if (!Number.isInteger(n) || n < 1 || planes % n !== 0 || channels % n !== 0) {
        return `stage ${s + 1} level ${l + 1}: groups ${n} must divide its ${planes} input and ${channels} output channels`;
      }
    }
  }
  return null;
}

function pyconvLevelsOrNull(planes: number, groups: readonly number[]): { channels: number; groups: number }[] | null {
  try {
    return pyconvLevels(planes, groups);
  } catch {
    return null;
  }
}

export class PyConvResNet extends Module {
  /** Channels of the four stage outputs. */
  readonly outChannels: [number, number, number, number];
  readonly stageModules: readonly (readonly string[])[] = [['conv1', 'bn1'], ['layer1'], ['layer2'], ['layer3'], ['layer4']];
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  private readonly layers: Sequential[];

  constructor(opts: PyConvResNetOptions) {
    super();
    const blocks = BLOCKS[opts.depth];
    if (blocks === undefined) {
      throw new Error(`Error in PyConvResNet: depth ${opts.depth} is not one of ${PYCONV_RESNET_DEPTHS.join(', ')}`);
    }
    const os = opts.outputStride ?? 8;
    const stages = STAGES[os];
    if (stages === undefined) {
      throw new Error(`Error in PyConvResNet: output stride ${os} is not one of ${PYCONV_OUTPUT_STRIDES.join(', ')}`);
    }
    const base = opts.baseChannels ?? 64;
    if (!Number.isInteger(base) || base < 1) throw new Error(`Error in PyConvResNet: bad base_channels ${base}`);
    const groups = opts.groups ?? PYCONV_GROUPS;
    const problem = pyconvGroupsProblem(base, groups);
    if (problem !== null) throw new Error(`Error in PyConvResNet: pyconv_groups: ${problem}`);
    const syncBN = opts.syncBN ?? false;
    const contractDilation = opts.contractDilation ?? false;
    const bn = (c: number) => new BatchNorm2d(c, { sync: syncBN });

    this.conv1 = this.registerModule('conv1', new Conv2d(opts.inChannels ?? 3, base, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.registerModule('bn1', bn(base));

    let inplanes = base;
    this.layers = [];
    const outChannels: number[] = [];
    for (let i = 0; i < 4; i++) {
      const planes = base * 2 ** i;
      const out = planes * PyConvBlock.expansion;
      const stride = stages.strides[i];
      const dilation = stages.dilations[i];
      const firstDilation = contractDilation && dilation > 1 ? Math.floor(dilation / 2) : dilation;
      const downsample = new Sequential([
        new MaxPool2d(3, stride, 1), new Conv2d(inplanes, out, 1, { bias: false }), bn(out),
      ]);
      const members: (Module & Layer)[] = [];
      for (let b = 0; b < blocks[i]; b++) {
        members.push(new PyConvBlock({
          inplanes: b === 0 ? inplanes : out,
          planes,
          stride: b === 0 ? stride : 1,
          dilation: b === 0 ? firstDilation : dilation,
          groups: groups[i],
          downsample: b === 0 ? downsample : undefined,
          syncBN,
          zeroInitResidual: opts.zeroInitResidual ?? false,
        }));
      }
      this.layers.push(this.registerModule(`layer${i + 1}`, new Sequential(members)));
      inplanes = out;
      outChannels.push(out);
    }
    this.outChannels = outChannels as [number, number, number, number];
  }

  /** The four stage outputs (strides 4, 8, 8|16|16, 8|16|32 for output stride 8|16|32). */
  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D[] {
    return tf.tidy(() => {
      let y = this.bn1.forwardFused(this.conv1.forward(x), ctx, { relu: true });
      const outs: tf.Tensor4D[] = [];
      for (const layer of this.layers) {
        y = layer.forward(y, ctx);
        outs.push(y);
      }
      return outs;
    });
  }
}
