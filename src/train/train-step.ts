// One optimisation step: forward, losses, backward, (gradient averaging across trainers), update.
import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from '../models/context';
import { crossEntropy } from './cross-entropy';
import type { Sgd } from './sgd';
import type { TrainMetrics } from './train-metrics';

export interface Segmentor {
  forward(x: tf.Tensor4D, ctx: ForwardContext): { out: tf.Tensor4D; aux?: tf.Tensor4D };
}

export interface StepBatch {
  images: Float32Array;
  labels: Int32Array;
  n: number;
  h: number;
  w: number;
}

export interface StepOptions {
  ignoreIndex: number;
  auxWeight: number;
  lr: number;
  ctx: ForwardContext;
  /**
   * Averages gradients across trainers in place of the identity (absent: one trainer). Receives and
   * returns gradients by parameter name; it owns the tensors it is given.
   */
  reduceGradients?: (grads: Map<string, tf.Tensor>) => Map<string, tf.Tensor> | Promise<Map<string, tf.Tensor>>;
}

export async function trainStep(
  model: Segmentor,
  trainable: ReadonlyArray<[string, tf.Variable]>,
  optimizer: Sgd,
  metrics: TrainMetrics,
  batch: StepBatch,
  opts: StepOptions,
): Promise<void> {
  const x = tf.tensor4d(batch.images, [batch.n, batch.h, batch.w, 3]);
  const y = tf.tensor3d(batch.labels, [batch.n, batch.h, batch.w], 'int32');
  const vars = trainable.map(([, v]) => v);
  const { value, grads } = tf.variableGrads(() => {
    const { out, aux } = model.forward(x, opts.ctx);
    const main = crossEntropy(out, y, opts.ignoreIndex);
    const auxLoss = aux ? crossEntropy(aux, y, opts.ignoreIndex) : undefined;
    const total = auxLoss ? (tf.add(main, tf.mul(auxLoss, opts.auxWeight)) as tf.Scalar) : main;
    metrics.record(total, main, auxLoss, out, y);
    return total;
  }, vars);
  // variableGrads keys gradients by the engine's variable names; the optimizer speaks parameter names.
  let byName = new Map<string, tf.Tensor>();
  for (const [name, v] of trainable) byName.set(name, grads[v.name]);
  tf.dispose([x, y, value]);
  if (opts.reduceGradients) byName = await opts.reduceGradients(byName);
  optimizer.step(byName, opts.lr);
  tf.dispose([...byName.values()]);
}
