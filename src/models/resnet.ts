// The dilated ResNet backbone of mmseg's PSPNet/DeepLab configs, with mmseg's parameter names.
//
// Stems: 'v1b' is torchvision's (7x7/2 conv, BN, ReLU) as backbone.conv1 / backbone.bn1; 'v1c'
// replaces it with three 3x3 convs (stride 2 on the first) as backbone.stem.{0,1,3,4,6,7}; 'v1d' is
// v1c plus an average pool in front of the stride-1 shortcut conv (downsample.0 pool, .1 conv,
// .2 bn). All three end in a 3x3/2 max pool.
//
// Output stride 8 keeps stages 3 and 4 at 1/8 resolution by trading their stride for dilation 2
// and 4 (16: stage 4 only, dilation 2). By default every block of a dilated stage uses the stage's
// dilation (mmseg's ResNet default contract_dilation=false, hszhao's semseg PSPNet); with
// contractDilation the first block uses half of it, as mmseg's PSPNet/DeepLab configs set and
// torchvision's replace_stride_with_dilation does. Parameter names and shapes are the same either way. base_channels scales every width (stem, stages), so a
// narrow ResNet-18 (e.g. base 16) trains on a CPU.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { Conv2d } from './conv2d';
import { BatchNorm2d } from './batch-norm';
import { ReLU } from './relu';
import { MaxPool2d } from './max-pool';
import { AvgPool2d } from './avg-pool';
import { Sequential } from './sequential';
import { BasicBlock } from './basic-block';
import { Bottleneck } from './bottleneck';
import type { ResBlockClass } from './res-block';

export type ResNetDepth = 18 | 34 | 50 | 101 | 152;
export type ResNetStem = 'v1b' | 'v1c' | 'v1d';
export type OutputStride = 8 | 16 | 32;

const ARCH: Record<ResNetDepth, { block: ResBlockClass; blocks: [number, number, number, number] }> = {
  18: { block: BasicBlock, blocks: [2, 2, 2, 2] },
  34: { block: BasicBlock, blocks: [3, 4, 6, 3] },
  50: { block: Bottleneck, blocks: [3, 4, 6, 3] },
  101: { block: Bottleneck, blocks: [3, 4, 23, 3] },
  152: { block: Bottleneck, blocks: [3, 8, 36, 3] },
};

/** Per-stage (stride, dilation) for each output stride. */
const STAGES: Record<OutputStride, { strides: number[]; dilations: number[] }> = {
  8: { strides: [1, 2, 1, 1], dilations: [1, 1, 2, 4] },
  16: { strides: [1, 2, 2, 1], dilations: [1, 1, 1, 2] },
  32: { strides: [1, 2, 2, 2], dilations: [1, 1, 1, 1] },
};

export const RESNET_DEPTHS: readonly ResNetDepth[] = [18, 34, 50, 101, 152];
export const RESNET_STEMS: readonly ResNetStem[] = ['v1b', 'v1c', 'v1d'];
export const OUTPUT_STRIDES: readonly OutputStride[] = [8, 16, 32];

export interface ResNetOptions {
  depth: ResNetDepth;
  stem?: ResNetStem;
  outputStride?: OutputStride;
  /** Width of stage 1's 3x3 convs and of the stem; mmseg's 64. */
  baseChannels?: number;
  /**
   * Output width of the stem, which stage 1 takes as input (mmseg's stem_channels; the deep stem is
   * half, half, this). Default baseChannels; hszhao's semseg ResNets use 128 with base 64.
   */
  stemChannels?: number;
  inChannels?: number;
  syncBN?: boolean;
  /** First block of a dilated stage at half the stage's dilation (mmseg contract_dilation). */
  contractDilation?: boolean;
  /**
   * DeepLab's multi-grid for stage 4 (e.g. [1, 2, 4]), one factor per block: block i's dilation is
   * the stage's dilation times multiGrid[i]. Replaces contractDilation in that stage, as mmseg's
   * multi_grid does (mmseg takes the list as the dilations themselves; the DeepLabV3 paper, and
   * segdist, as unit rates of the stage's rate: OS 16 with [1, 2, 4] gives 2, 4, 8).
   */
  multiGrid?: number[];
  /**
   * Start each block's last BN at gamma 0. mmseg's ResNet defaults to true when it initialises from
   * scratch; segdist's default is false (every BN gamma 1), as its design asks.
   */
  zeroInitResidual?: boolean;
}

export class ResNet extends Module {
  /** Channels of the four stage outputs. */
  readonly outChannels: [number, number, number, number];
  readonly stemType: ResNetStem;
  readonly stageModules: readonly (readonly string[])[];
  private readonly stemLayers: Layer[];
  private readonly maxpool: MaxPool2d;
  private readonly layers: Sequential[];

  constructor(opts: ResNetOptions) {
    super();
    const arch = ARCH[opts.depth];
    if (arch === undefined) {
      throw new Error(`Error in ResNet: depth ${opts.depth} is not one of ${RESNET_DEPTHS.join(', ')}`);
    }
    const stemType = opts.stem ?? 'v1b';
    if (!RESNET_STEMS.includes(stemType)) {
      throw new Error(`Error in ResNet: stem '${stemType}' is not one of ${RESNET_STEMS.join(', ')}`);
    }
    const os = opts.outputStride ?? 8;
    const stages = STAGES[os];
    if (stages === undefined) {
      throw new Error(`Error in ResNet: output stride ${os} is not one of ${OUTPUT_STRIDES.join(', ')}`);
    }
    const base = opts.baseChannels ?? 64;
    if (!Number.isInteger(base) || base < 2) throw new Error(`Error in ResNet: bad base_channels ${base}`);
    const stemOut = opts.stemChannels ?? base;
    if (!Number.isInteger(stemOut) || stemOut < 2) throw new Error(`Error in ResNet: bad stem_channels ${stemOut}`);
    const inChannels = opts.inChannels ?? 3;
    const syncBN = opts.syncBN ?? false;
    const zeroInitResidual = opts.zeroInitResidual ?? false;
    const contractDilation = opts.contractDilation ?? false;
    this.stemType = stemType;
    const multiGrid = opts.multiGrid;
    if (multiGrid !== undefined) {
      if (multiGrid.length !== arch.blocks[3] || multiGrid.some((m) => !Number.isInteger(m) || m < 1)) {
        throw new Error(`Error in ResNet: multi_grid (model.backbone.multi_grid) must give one positive integer per block of layer4 ` +
          `(${arch.blocks[3]} in ResNet-${opts.depth}), got [${multiGrid}]`);
      }
    }

    // For v1b the stem's members sit directly on the backbone under mmseg's flat names (conv1, bn1);
    // for v1c/v1d they form the Sequential `stem`.
    const bn = (c: number) => new BatchNorm2d(c, { sync: syncBN });
    if (stemType === 'v1b') {
      const conv1 = this.registerModule('conv1', new Conv2d(inChannels, stemOut, 7, { stride: 2, padding: 3, bias: false }));
      const bn1 = this.registerModule('bn1', bn(stemOut));
      this.stemLayers = [conv1, bn1, new ReLU()];
    } else {
      const half = Math.floor(stemOut / 2);
      this.stemLayers = [this.registerModule('stem', new Sequential([
        new Conv2d(inChannels, half, 3, { stride: 2, padding: 1, bias: false }), bn(half), new ReLU(),
        new Conv2d(half, half, 3, { padding: 1, bias: false }), bn(half), new ReLU(),
        new Conv2d(half, stemOut, 3, { padding: 1, bias: false }), bn(stemOut), new ReLU(),
      ]))];
    }
    this.maxpool = new MaxPool2d(3, 2, 1);

    const avgDown = stemType === 'v1d';
    const block = arch.block;
    let inplanes = stemOut;
    this.layers = [];
    const outChannels: number[] = [];
    for (let i = 0; i < 4; i++) {
      const planes = base * 2 ** i;
      const stride = stages.strides[i];
      const dilation = stages.dilations[i];
      const firstDilation = contractDilation && dilation > 1 ? Math.floor(dilation / 2) : dilation;
      const out = planes * block.expansion;
      let downsample: Sequential | undefined;
      if (stride !== 1 || inplanes !== out) {
        const members: (Module & Layer)[] = [];
        if (avgDown) members.push(new AvgPool2d(stride));
        members.push(new Conv2d(inplanes, out, 1, { stride: avgDown ? 1 : stride, bias: false }), bn(out));
        downsample = new Sequential(members);
      }
      const blocks: (Module & Layer)[] = [];
      const grid = i === 3 ? multiGrid : undefined;
      for (let b = 0; b < arch.blocks[i]; b++) {
        blocks.push(new block({
          inplanes: b === 0 ? inplanes : out,
          planes,
          stride: b === 0 ? stride : 1,
          dilation: grid !== undefined ? dilation * grid[b] : b === 0 ? firstDilation : dilation,
          downsample: b === 0 ? downsample : undefined,
          syncBN,
          zeroInitResidual,
        }));
      }
      this.layers.push(this.registerModule(`layer${i + 1}`, new Sequential(blocks)));
      inplanes = out;
      outChannels.push(out);
    }
    this.outChannels = outChannels as [number, number, number, number];
    this.stageModules = [stemType === 'v1b' ? ['conv1', 'bn1'] : ['stem'], ...this.layers.map((_, i) => [`layer${i + 1}`])];
  }

  /** The four stage outputs (strides 4, 8, 8|16, 8|16|32 for output stride 8|16|32). */
  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D[] {
    return tf.tidy(() => {
      let y = x;
      for (const layer of this.stemLayers) y = layer.forward(y, ctx);
      y = this.maxpool.forward(y);
      const outs: tf.Tensor4D[] = [];
      for (const layer of this.layers) {
        y = layer.forward(y, ctx);
        outs.push(y);
      }
      return outs;
    });
  }
}
