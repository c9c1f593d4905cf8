// Builds a segmentation model from the `model` section of a run's config. Backbone and head types
// come from explicit tables (no registry filled by import side effects); their keys are exported so
// config validation can list the valid names.

import { ResNet, RESNET_DEPTHS, RESNET_STEMS, type ResNetDepth, type ResNetStem } from './resnet';
import { PSPHead } from './psp-head';
import { FCNHead } from './fcn-head';
import { ASPPHead, defaultASPPDilations } from './aspp-head';
import { DeepLabV3PlusHead } from './deeplabv3plus-head';
import { HEAD_ATTENTIONS, type HeadAttention } from './decode-head';
import { EncoderDecoder, type Backbone } from './encoder-decoder';
import type { DecodeHead } from './decode-head';

export interface ModelConfig {
  norm: 'bn' | 'syncbn';
  align_corners: boolean;
  backbone: {
    type: 'resnet';
    depth: ResNetDepth;
    stem: ResNetStem;
    output_stride: 8 | 16;
    base_channels: number;
    /**
     * Optional, default false: the first block of each dilated stage at half the stage's dilation
     * (mmseg's contract_dilation, which its PSPNet configs set to true).
     */
    contract_dilation?: boolean;
    /** mmseg's frozen_stages: -1 none, 0 the stem, n the stem and stages 1..n (default -1). */
    frozen_stages?: number;
    /** mmseg's norm_eval: every backbone BN uses its running statistics while training (default false). */
    norm_eval?: boolean;
    /** Optional, default null: DeepLab's multi-grid factors for stage 4's blocks (e.g. [1, 2, 4]). */
    multi_grid?: number[] | null;
  };
  head: {
    type: 'psp' | 'aspp' | 'deeplabv3plus';
    channels: number;
    dropout: number;
    /** PSP only. */
    pool_scales: number[];
    /** ASPP heads: the branches' dilations; null or absent: by output stride. */
    dilations?: number[] | null;
    /** DeepLabV3+ only: width of the stage-1 features in the decoder (default 48). */
    c1_channels?: number;
    /** Attention block after the head (default none). */
    attention?: HeadAttention;
  };
  aux: { enabled: boolean; channels: number; weight: number; dropout: number };
}

const BACKBONES = {
  resnet: (cfg: ModelConfig): Backbone => new ResNet({
    depth: cfg.backbone.depth,
    stem: cfg.backbone.stem,
    outputStride: cfg.backbone.output_stride,
    baseChannels: cfg.backbone.base_channels,
    contractDilation: cfg.backbone.contract_dilation ?? false,
    multiGrid: cfg.backbone.multi_grid ?? undefined,
    syncBN: cfg.norm === 'syncbn',
  }),
} as const;

/** What every decode head takes from the config, reading the last stage. */
function headOptions(cfg: ModelConfig, inChannels: number, numClasses: number) {
  return {
    inChannels,
    channels: cfg.head.channels,
    numClasses,
    inIndex: 3,
    dropout: cfg.head.dropout,
    alignCorners: cfg.align_corners,
    syncBN: cfg.norm === 'syncbn',
    attention: cfg.head.attention ?? 'none',
  };
}

const asppDilations = (cfg: ModelConfig): number[] =>
  cfg.head.dilations ?? defaultASPPDilations(cfg.backbone.output_stride);

const HEADS = {
  psp: (cfg: ModelConfig, stages: readonly number[], numClasses: number): DecodeHead => new PSPHead({
    ...headOptions(cfg, stages[3], numClasses),
    poolScales: cfg.head.pool_scales,
  }),
  aspp: (cfg: ModelConfig, stages: readonly number[], numClasses: number): DecodeHead => new ASPPHead({
    ...headOptions(cfg, stages[3], numClasses),
    dilations: asppDilations(cfg),
  }),
  deeplabv3plus: (cfg: ModelConfig, stages: readonly number[], numClasses: number): DecodeHead => new DeepLabV3PlusHead({
    ...headOptions(cfg, stages[3], numClasses),
    dilations: asppDilations(cfg),
    c1InChannels: stages[0],
    c1Channels: cfg.head.c1_channels ?? 48,
  }),
} as const;

export const BACKBONE_TYPES: readonly string[] = Object.keys(BACKBONES);
export const HEAD_TYPES: readonly string[] = Object.keys(HEADS);
export const NORM_TYPES: readonly string[] = ['bn', 'syncbn'];
export { RESNET_DEPTHS, RESNET_STEMS, HEAD_ATTENTIONS };

function pick<T>(table: Record<string, T>, kind: string, name: string): T {
  if (!Object.prototype.hasOwnProperty.call(table, name)) {
    throw new Error(`Unknown ${kind} type '${name}'; valid: ${Object.keys(table).join(', ')}`);
  }
  return table[name];
}

/** The backbone of `cfg` alone (weights not yet initialised). */
export function buildBackbone(cfg: ModelConfig): Backbone {
  return pick<(c: ModelConfig) => Backbone>(BACKBONES, 'backbone', cfg.backbone.type)(cfg);
}

/**
 * Assembles backbone + decode head (+ FCN auxiliary head on stage 3) and draws every weight from `seed`
 * (a pure function of seed and parameter name; see Module.initialize).
 */
export function buildModel(cfg: ModelConfig, numClasses: number, seed: number): EncoderDecoder {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new Error(`Error in buildModel: num_classes must be a positive integer, got ${numClasses}`);
  }
  if (!NORM_TYPES.includes(cfg.norm)) {
    throw new Error(`Unknown norm type '${cfg.norm}'; valid: ${NORM_TYPES.join(', ')}`);
  }
  const backbone = buildBackbone(cfg);
  const makeHead = pick<(c: ModelConfig, s: readonly number[], n: number) => DecodeHead>(HEADS, 'head', cfg.head.type);
  const decodeHead = makeHead(cfg, backbone.outChannels, numClasses);
  const auxiliaryHead = cfg.aux.enabled
    ? new FCNHead({
      inChannels: backbone.outChannels[2],
      channels: cfg.aux.channels,
      numClasses,
      inIndex: 2,
      dropout: cfg.aux.dropout,
      alignCorners: cfg.align_corners,
      syncBN: cfg.norm === 'syncbn',
    })
    : undefined;
  const model = new EncoderDecoder({ backbone, decodeHead, auxiliaryHead, alignCorners: cfg.align_corners });
  model.initialize(seed);
  return model;
}
