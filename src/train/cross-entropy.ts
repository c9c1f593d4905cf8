import type * as tf from '@tensorflow/tfjs';
import { softmaxCrossEntropy } from '../backend/softmax-cross-entropy';

/**
 * Pixelwise softmax cross-entropy averaged over the pixels whose label is not `ignoreIndex`
 * (PyTorch's CrossEntropyLoss(ignore_index=...) with reduction 'mean'). logits: [N,H,W,C] NHWC,
 * labels: int32 [N,H,W]. A batch with no valid pixel gives 0, not NaN. One fused kernel with its own
 * gradient on wasm and cpu (src/backend), instead of a one-hot and a dozen small kernels.
 */
export function crossEntropy(logits: tf.Tensor4D, labels: tf.Tensor3D, ignoreIndex: number): tf.Scalar {
  return softmaxCrossEntropy(logits, labels, ignoreIndex);
}
