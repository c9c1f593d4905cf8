// PyConvSegNet's decode head (Duta et al. 2020; iduta's PyConvHead) with iduta's names under
// decode_head.: a local branch (local_context: pyramidal convolution at full resolution) and a global
// branch (global_context: the same on the map pooled to 9x9, upsampled back), concatenated and fused
// by a 3x3 conv (merge_context), then DecodeHead's Dropout2d and 1x1 conv_seg.
//
// Widths: each branch outputs 2 * channels and merge_context outputs channels; the local branch works
// at a quarter of the backbone's width and the global one at 2 * channels. At channels 256 on a
// 2048-channel backbone that is iduta's head exactly (branches 512, local reduction 2048 / 4 = 512,
// merge 1024 -> 256); a narrower model scales the head with model.head.channels, its local reduction
// with the backbone's width.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { DecodeHead, type DecodeHeadOptions } from './decode-head';
import { LocalPyConvBlock } from './pyconv-local-context';
import { GlobalPyConvBlock } from './pyconv-global-context';
import { MergeLocalGlobal } from './pyconv-merge-context';

/** iduta's groups of the head's four pyramid levels (kernels 3, 5, 7, 9). */
export const PYCONV_HEAD_GROUPS: readonly number[] = [1, 4, 8, 16];

/**
 * Why `groups` cannot build the head on a backbone `inChannels` wide with `channels`, or null when it
 * can: each group count must divide its level's width in both branches (the local branch's levels are
 * inChannels / 16 wide, the global branch's 2 * channels / 4).
 */
export function pyconvHeadGroupsProblem(inChannels: number, channels: number, groups: readonly number[]): string | null {
  const local = inChannels / 16;
  const global = channels / 2;
  const divides = (g: number, w: number) => Number.isInteger(w) && w % g === 0;
  if (groups.length === 4 && groups.every((g) => Number.isInteger(g) && g >= 1 && divides(g, local) && divides(g, global))) {
    return null;
  }
  return `[${groups}] must be 4 groups dividing each pyramid level's channels: the local branch's levels have ` +
    `${local} (backbone width ${inChannels} / 16), the global branch's ${global} (2 x head channels ${channels} / 4)`;
}

export interface PyConvHeadOptions extends DecodeHeadOptions {
  /** Grid of the global branch's adaptive pooling; iduta's 9. */
  bins?: number;
  /** Groups of the pyramid levels in both branches (default PYCONV_HEAD_GROUPS). */
  groups?: readonly number[];
}

export class PyConvHead extends DecodeHead {
  readonly local_context: LocalPyConvBlock;
  readonly global_context: GlobalPyConvBlock;
  readonly merge_context: MergeLocalGlobal;

  constructor(opts: PyConvHeadOptions) {
    super(opts);
    const groups = opts.groups ?? PYCONV_HEAD_GROUPS;
    const branch = 2 * opts.channels;
    const problem = pyconvHeadGroupsProblem(opts.inChannels, opts.channels, groups);
    if (problem !== null) throw new Error(`Error in PyConvHead: pyconv_groups ${problem}`);
    this.local_context = this.registerModule('local_context', new LocalPyConvBlock({
      inChannels: opts.inChannels, outChannels: branch, groups, syncBN: opts.syncBN,
    }));
    this.global_context = this.registerModule('global_context', new GlobalPyConvBlock({
      inChannels: opts.inChannels, outChannels: branch, groups, syncBN: opts.syncBN,
      bins: opts.bins ?? 9, alignCorners: opts.alignCorners,
    }));
    this.merge_context = this.registerModule('merge_context', new MergeLocalGlobal(2 * branch, opts.channels, opts.syncBN));
  }

  forward(features: tf.Tensor4D[], ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const x = this.input(features);
      const merged = this.merge_context.forward(this.local_context.forward(x, ctx), this.global_context.forward(x, ctx), ctx);
      return this.classify(merged, ctx);
    });
  }
}
