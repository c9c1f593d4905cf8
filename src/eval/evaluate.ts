// Whole-image evaluation over a stream of batches: logits at label resolution, argmax, confusion
// matrix. Validation is not a hot path, so reading each batch's predictions back is fine here.
import * as tf from '@tensorflow/tfjs';
import type { Segmentor, StepBatch } from '../train/train-step';
import { crossEntropy } from '../train/cross-entropy';
import { ConfusionMatrix, SegMetrics } from './confusion-matrix';

export interface EvalResult {
  metrics: SegMetrics;
  loss: number;
  images: number;
  confusion: ConfusionMatrix;
}

export async function evaluate(
  model: Segmentor,
  batches: AsyncIterable<StepBatch>,
  opts: { numClasses: number; ignoreIndex: number },
): Promise<EvalResult> {
  const confusion = new ConfusionMatrix(opts.numClasses);
  let lossSum = 0;
  let images = 0;
  for await (const b of batches) {
    const [pred, loss] = tf.tidy(() => {
      const x = tf.tensor4d(b.images, [b.n, b.h, b.w, 3]);
      const y = tf.tensor3d(b.labels, [b.n, b.h, b.w], 'int32');
      const { out } = model.forward(x, { training: false, seed: 0 });
      return [tf.argMax(out, -1), crossEntropy(out, y, opts.ignoreIndex)];
    });
    confusion.add(await pred.data(), b.labels, opts.ignoreIndex);
    lossSum += (await loss.data())[0] * b.n;
    images += b.n;
    tf.dispose([pred, loss]);
  }
  return { metrics: confusion.metrics(), loss: images ? lossSum / images : NaN, images, confusion };
}
