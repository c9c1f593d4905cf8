// PyConvResNet's residual block, iduta's PyConvBlock: a Bottleneck whose 3x3 conv2 is a pyramidal
// convolution (PyConv, children conv2_1..conv2_n) in stages 1-3, and a single 3x3 conv (plain
// `conv2`, no levels) in stage 4, where the map is too small for larger kernels to see more.
// Expansion 4, like Bottleneck; the stride sits on conv2 (and on the shortcut's max pool).

import { Conv2d } from './conv2d';
import { PyConv, pyconvLevels } from './pyconv';
import { Bottleneck } from './bottleneck';
import type { ResBlockSpec } from './res-block';

export interface PyConvBlockSpec extends ResBlockSpec {
  /** Groups of each pyramid level, smallest kernel first; one entry makes conv2 a plain 3x3 conv. */
  groups: readonly number[];
}

export class PyConvBlock extends Bottleneck {
  constructor(spec: PyConvBlockSpec) {
    const { planes, stride, dilation, groups } = spec;
    super(spec, groups.length === 1
      ? new Conv2d(planes, planes, 3, { stride, dilation, padding: dilation, groups: groups[0], bias: false })
      : new PyConv(planes, pyconvLevels(planes, groups), { stride, dilation }));
  }
}
