import * as tf from '@tensorflow/tfjs';

/**
 * Pixelwise softmax cross-entropy averaged over the pixels whose label is not `ignoreIndex`
 * (PyTorch's CrossEntropyLoss(ignore_index=...) with reduction 'mean'). logits: [N,H,W,C] NHWC,
 * labels: int32 [N,H,W]. A batch with no valid pixel gives 0, not NaN.
 */
export function crossEntropy(logits: tf.Tensor4D, labels: tf.Tensor3D, ignoreIndex: number): tf.Scalar {
  return tf.tidy(() => {
    const numClasses = logits.shape[3];
    const valid = tf.notEqual(labels, ignoreIndex);
    // oneHot yields an all-zero row for an out-of-range index, but the ignore index may be < C.
    const safeLabels = tf.where(valid, labels, tf.zerosLike(labels));
    const oneHot = tf.oneHot(safeLabels, numClasses) as tf.Tensor4D;
    const logp = tf.logSoftmax(logits, -1);
    const nll = tf.neg(tf.sum(tf.mul(logp, oneHot), -1));
    const mask = tf.cast(valid, 'float32');
    const count = tf.maximum(tf.sum(mask), 1);
    return tf.div(tf.sum(tf.mul(nll, mask)), count) as tf.Scalar;
  });
}
