// Running training statistics kept on the device (tf.Variables), so a step never waits to read a
// value back: they are read only on logging steps, and the tensor count stays flat across steps.
import * as tf from '@tensorflow/tfjs';
import { ConfusionMatrix } from '../eval/confusion-matrix';

export interface TrainStats {
  steps: number;
  loss: number;
  mainLoss: number;
  auxLoss: number;
  confusion: ConfusionMatrix;
}

export class TrainMetrics {
  // Made in a tidy: tf.variable copies its initial value, which would otherwise stay allocated.
  private readonly lossSums = tf.tidy(() => tf.variable(tf.zeros([3]), false)); // total, main, aux
  private readonly confusion: tf.Variable;
  private steps = 0;

  constructor(private readonly numClasses: number, private readonly ignoreIndex: number) {
    this.confusion = tf.tidy(() => tf.variable(tf.zeros([numClasses * numClasses]), false));
  }

  /** Adds one step's losses and predictions. Call inside the step's scope (it creates temporaries). */
  record(total: tf.Scalar, main: tf.Scalar, aux: tf.Scalar | undefined, logits: tf.Tensor4D, labels: tf.Tensor3D): void {
    const c = this.numClasses;
    const losses = tf.stack([total, main, aux ?? tf.scalar(0)]);
    this.lossSums.assign(tf.add(this.lossSums, losses));
    const pred = tf.cast(tf.argMax(logits, -1), 'int32');
    const valid = tf.logicalAnd(tf.notEqual(labels, this.ignoreIndex), tf.less(labels, c));
    const index = tf.where(valid, tf.add(tf.mul(labels, tf.scalar(c, 'int32')), pred), tf.zerosLike(labels)).flatten();
    const counts = tf.bincount(index as tf.Tensor1D, tf.cast(valid, 'float32').flatten(), c * c);
    this.confusion.assign(tf.add(this.confusion, counts));
    this.steps++;
  }

  /** Reads the running values (a sync point: only on logging steps). */
  read(): TrainStats {
    const sums = this.lossSums.dataSync();
    const cm = new ConfusionMatrix(this.numClasses);
    cm.merge(Float64Array.from(this.confusion.dataSync()));
    const n = Math.max(this.steps, 1);
    return { steps: this.steps, loss: sums[0] / n, mainLoss: sums[1] / n, auxLoss: sums[2] / n, confusion: cm };
  }

  resetLosses(): void {
    tf.tidy(() => this.lossSums.assign(tf.zeros([3])));
    this.steps = 0;
  }

  resetConfusion(): void {
    tf.tidy(() => this.confusion.assign(tf.zeros([this.numClasses * this.numClasses])));
  }

  dispose(): void {
    this.lossSums.dispose();
    this.confusion.dispose();
  }
}
