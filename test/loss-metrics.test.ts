import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { crossEntropy } from '../src/train/cross-entropy';
import { ConfusionMatrix } from '../src/eval/confusion-matrix';
import { TrainMetrics } from '../src/train/train-metrics';

test('cross-entropy averages over non-ignored pixels only', async () => {
  await tf.setBackend('cpu');
  const logits = tf.tensor4d([1, 2, 0, 0.5, -1, 3, 2, 2, 2, 0, 0, 9], [1, 2, 2, 3]);
  const labels = tf.tensor3d([1, 255, 2, 0], [1, 2, 2], 'int32');
  const rows = [[1, 2, 0], [0.5, -1, 3], [2, 2, 2], [0, 0, 9]];
  const lse = (r: number[]) => Math.log(r.reduce((a, v) => a + Math.exp(v), 0));
  const expected = ((lse(rows[0]) - 2) + (lse(rows[2]) - 2) + (lse(rows[3]) - 0)) / 3;
  assert.ok(Math.abs(crossEntropy(logits, labels, 255).dataSync()[0] - expected) < 1e-5);
  // An ignore index inside the class range must not be counted either.
  const zeroIgnored = crossEntropy(logits, tf.tensor3d([1, 0, 2, 0], [1, 2, 2], 'int32'), 0).dataSync()[0];
  assert.ok(Math.abs(zeroIgnored - ((lse(rows[0]) - 2) + (lse(rows[2]) - 2)) / 2) < 1e-5);
  assert.equal(crossEntropy(logits, tf.fill([1, 2, 2], 255, 'int32') as tf.Tensor3D, 255).dataSync()[0], 0);
});

test('metrics follow mmseg: absent classes leave the mean', () => {
  const cm = new ConfusionMatrix(4);
  // gt:   0 0 1 1 2 255   pred: 0 1 1 1 0 3 ; class 3 never appears in gt, predicted only on an ignored pixel
  cm.add([0, 1, 1, 1, 0, 3], [0, 0, 1, 1, 2, 255], 255);
  const m = cm.metrics();
  assert.equal(m.pixels, 5);
  assert.ok(Math.abs(m.aAcc - 3 / 5) < 1e-12);
  assert.ok(Math.abs(m.iou[0] - 1 / 3) < 1e-12); // tp 1, gt 2, pred 2
  assert.ok(Math.abs(m.iou[1] - 2 / 3) < 1e-12); // tp 2, gt 2, pred 3
  assert.equal(m.iou[2], 0);
  assert.ok(Number.isNaN(m.iou[3]));
  assert.ok(Math.abs(m.mIoU - (1 / 3 + 2 / 3 + 0) / 3) < 1e-12);
  assert.throws(() => cm.add([0], [7], 255), /label value 7 is outside 0\.\.3/);
  const other = new ConfusionMatrix(4);
  other.merge(cm);
  other.merge(cm);
  assert.equal(other.metrics().pixels, 10);
});

test('training metrics accumulate on the device and match the host confusion matrix', async () => {
  await tf.setBackend('cpu');
  const tm = new TrainMetrics(3, 255);
  const logits = tf.tensor4d([5, 0, 0, 0, 5, 0, 0, 0, 5, 5, 0, 0], [1, 2, 2, 3]); // pred 0 1 2 0
  const labels = tf.tensor3d([0, 2, 255, 0], [1, 2, 2], 'int32');
  tf.tidy(() => tm.record(tf.scalar(2), tf.scalar(1.5), tf.scalar(1.25), logits, labels));
  const before = tf.memory().numTensors;
  tf.tidy(() => tm.record(tf.scalar(4), tf.scalar(2.5), undefined, logits, labels));
  assert.equal(tf.memory().numTensors, before);
  const s = tm.read();
  assert.equal(s.steps, 2);
  assert.equal(s.loss, 3);
  assert.equal(s.mainLoss, 2);
  assert.equal(s.auxLoss, 0.625);
  const host = new ConfusionMatrix(3);
  host.add([0, 1, 2, 0], [0, 2, 255, 0], 255);
  host.add([0, 1, 2, 0], [0, 2, 255, 0], 255);
  assert.deepEqual(Array.from(s.confusion.counts), Array.from(host.counts));
  tm.dispose();
});
