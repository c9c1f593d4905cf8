// Builds a segmentation model from the `model` section of a run's config. Backbone and head types
// come from explicit tables (no registry filled by import side effects); their keys are exported so
// config validation can list the valid names.

import { ResNet, RESNET_DEPTHS, RESNET_STEMS, type ResNetDepth, type ResNetStem } from './resnet';
import { PyConvResNet, PYCONV_RESNET_DEPTHS, PYCONV_GROUPS, type PyConvResNetDepth } from './pyconv-resnet';
import { PSPHead } from './psp-head';
import { PyConvHead, PYCONV_HEAD_GROUPS, pyconvHeadGroupsProblem } from './pyconv-head';
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
    type: 'resnet' | 'pyconvresnet';
    /** Valid depths depend on the type: BACKBONE_DEPTHS. */
    depth: ResNetDepth | PyConvResNetDepth;
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
    /** Optional, default null: the stem's output width (mmseg stem_channels); null = base_channels. */
    stem_channels?: number | null;
    /** pyconvresnet only, optional: groups of each stage's pyramid levels (default iduta's). */
    pyconv_groups?: number[][];
    /** Optional, default null: DeepLab's multi-grid factors for stage 4's blocks (e.g. [1, 2, 4]). */
    multi_grid?: number[] | null;
  };
  head: {
    type: 'psp' | 'pyconvseg' | 'aspp' | 'deeplabv3plus';
    channels: number;
    dropout: number;
    /** PSP only. */
    pool_scales: number[];
    /** pyconvseg only, optional: groups of the head's four pyramid levels (default iduta's 1, 4, 8, 16). */
    pyconv_groups?: number[];
    /** ASPP heads: the branches' dilations; null or absent: by output stride. */
    dilations?: number[] | null;
    /** DeepLabV3+ only: width of the stage-1 features in the decoder (default 48). */
    c1_channels?: number;
    /** Attention block after the head (default none). */
    attention?: HeadAttention;
  };
  aux: { enabled: boolean; channels: number; weight: number; dropout: number };
  /** Weights a training run starts from (src/weights/pretrained.ts); optional, default none. */
  pretrained?: string | null;
  pretrained_scheme?: string;
  pretrained_strict?: boolean;
}

const BACKBONES = {
  resnet: (cfg: ModelConfig): Backbone => new ResNet({
    depth: cfg.backbone.depth,
    stem: cfg.backbone.stem,
    outputStride: cfg.backbone.output_stride,
    baseChannels: cfg.backbone.base_channels,
    stemChannels: cfg.backbone.stem_channels ?? undefined,
    contractDilation: cfg.backbone.contract_dilation ?? false,
    multiGrid: cfg.backbone.multi_grid ?? undefined,
    syncBN: cfg.norm === 'syncbn',
  }),
  pyconvresnet: (cfg: ModelConfig): Backbone => {
    if (cfg.backbone.stem !== 'v1b') {
      throw new Error(`model.backbone.stem: pyconvresnet has only its 7x7 stem (v1b), got '${cfg.backbone.stem}'`);
    }
    return new PyConvResNet({
      depth: cfg.backbone.depth as PyConvResNetDepth,
      outputStride: cfg.backbone.output_stride,
      baseChannels: cfg.backbone.base_channels,
      contractDilation: cfg.backbone.contract_dilation ?? false,
      groups: cfg.backbone.pyconv_groups ?? PYCONV_GROUPS,
      syncBN: cfg.norm === 'syncbn',
    });
  },
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
  pyconvseg: (cfg: ModelConfig, stages: readonly number[], numClasses: number): DecodeHead => new PyConvHead({
    ...headOptions(cfg, stages[3], numClasses),
    groups: cfg.head.pyconv_groups ?? PYCONV_HEAD_GROUPS,
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
export { RESNET_DEPTHS, RESNET_STEMS, PYCONV_GROUPS, PYCONV_HEAD_GROUPS, pyconvHeadGroupsProblem, HEAD_ATTENTIONS };

/**
 * Width of each backbone type's last stage, from its config section, so config validation can check a
 * head against it before anything is built.
 */
export const BACKBONE_OUT_CHANNELS: Readonly<Record<keyof typeof BACKBONES, (b: { depth: number; base_channels: number }) => number>> = {
  resnet: (b) => b.base_channels * 8 * (b.depth >= 50 ? 4 : 1),
  pyconvresnet: (b) => b.base_channels * 32,
};

/** The depths each backbone type is built in; config validation checks model.backbone.depth against it. */
export const BACKBONE_DEPTHS: Readonly<Record<keyof typeof BACKBONES, readonly number[]>> = {
  resnet: RESNET_DEPTHS,
  pyconvresnet: PYCONV_RESNET_DEPTHS,
};

function pick<T>(table: Record<string, T>, kind: string, name: string): T {
  if (!Object.prototype.hasOwnProperty.call(table, name)) {
    throw new Error(`Unknown ${kind} type '${name}'; valid: ${Object.keys(table).join(', ')}`);
  }
  return table[name];
}

/** The backbone of `cfg` alone (weights not yet initialised). */
export function buildBackbone(cfg: ModelConfig): Backbone {
  const make = pick<(c: ModelConfig) => Backbone>(BACKBONES, 'backbone', cfg.backbone.type);
  const depths = BACKBONE_DEPTHS[cfg.backbone.type];
  if (!depths.includes(cfg.backbone.depth)) {
    throw new Error(`model.backbone.depth: ${cfg.backbone.depth} is not a depth of ${cfg.backbone.type}; valid: ${depths.join(', ')}`);
  }
  return make(cfg);
}

/**
 * Assembles backbone + decode head (+ FCN auxiliary head on stage 3) and draws every weight from `seed`
 * (a pure function of seed and parameter name; see Module.initialize). initialize: false leaves the
 * variables at zero, for callers that need only names and shapes (drawing a ResNet-50's weights
 * takes seconds).
 */
export function buildModel(cfg: ModelConfig, numClasses: number, seed: number, opts: { initialize?: boolean } = {}): EncoderDecoder {
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
  if (opts.initialize !== false) model.initialize(seed);
  return model;
}
