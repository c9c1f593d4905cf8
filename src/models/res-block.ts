// What ResNet needs to know about its residual blocks, shared by BasicBlock and Bottleneck.

import type { Module, Layer } from './module';
import type { Sequential } from './sequential';

export interface ResBlockSpec {
  inplanes: number;
  planes: number;
  /** Stride of the block's strided conv (the first 3x3 in both block types, torchvision style). */
  stride: number;
  /** Dilation of the block's strided 3x3 conv (and of Bottleneck's only 3x3). */
  dilation: number;
  /** The shortcut projection, when stride or width change: [AvgPool2d?,] Conv2d, BatchNorm2d. */
  downsample?: Sequential;
  syncBN: boolean;
  /** Start the block's last BN at gamma 0 so the block begins as the identity (mmseg's option). */
  zeroInitResidual: boolean;
}

export interface ResBlockClass {
  new (spec: ResBlockSpec): Module & Layer;
  /** Output width = planes * expansion. */
  readonly expansion: number;
}
