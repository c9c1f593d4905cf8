// Runs a Sequential laid out as PyTorch's [conv, BN, ReLU, conv, BN, ReLU, ...] (the index layout that
// iduta's PyConvSegNet head keys depend on), with each BN + ReLU pair as one fused BN op (BatchNorm2d
// .forwardFused: one pass forward and one backward instead of two each). Other members run as they
// are, so a leading pool (global_context.features.0) needs nothing special.

import type * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { BatchNorm2d } from './batch-norm';
import { ReLU } from './relu';
import type { Sequential } from './sequential';

export function forwardConvBnReluChain(layers: Sequential, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
  let y = x;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers.at(i);
    if (layer instanceof BatchNorm2d && i + 1 < layers.length && layers.at(i + 1) instanceof ReLU) {
      y = layer.forwardFused(y, ctx, { relu: true });
      i++;
    } else {
      y = layer.forward(y, ctx);
    }
  }
  return y;
}
