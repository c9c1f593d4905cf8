import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { Sgd } from '../src/train/sgd';
import { learningRate } from '../src/train/lr-schedule';

test('SGD follows PyTorch\'s update with momentum, weight decay and nesterov', async () => {
  await tf.setBackend('cpu');
  for (const nesterov of [false, true]) {
    const w = tf.variable(tf.tensor2d([[1, -2], [3, 0.5]]));
    const b = tf.variable(tf.tensor1d([0.5, -0.5]));
    const opt = new Sgd([['w', w], ['b', b]], { momentum: 0.9, weightDecay: 0.1, nesterov });
    // Reference, by hand: d = g + wd*p (no decay on the rank-1 bias), buf = m*buf + d, p -= lr*(nesterov ? d + m*buf : buf)
    let pw = [1, -2, 3, 0.5];
    let pb = [0.5, -0.5];
    let bw = [0, 0, 0, 0];
    let bb = [0, 0];
    const gw = [0.1, 0.2, -0.3, 0.4];
    const gb = [1, -1];
    for (const lr of [0.1, 0.05, 0.01]) {
      opt.step(new Map<string, tf.Tensor>([['w', tf.tensor2d([[0.1, 0.2], [-0.3, 0.4]])], ['b', tf.tensor1d([1, -1])]]), lr);
      const dw = pw.map((p, i) => gw[i] + 0.1 * p);
      bw = bw.map((v, i) => 0.9 * v + dw[i]);
      pw = pw.map((p, i) => p - lr * (nesterov ? dw[i] + 0.9 * bw[i] : bw[i]));
      bb = bb.map((v, i) => 0.9 * v + gb[i]);
      pb = pb.map((p, i) => p - lr * (nesterov ? gb[i] + 0.9 * bb[i] : bb[i]));
    }
    Array.from(w.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - pw[i]) < 1e-6, `w[${i}] ${v} vs ${pw[i]}`));
    Array.from(b.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - pb[i]) < 1e-6, `b[${i}] ${v} vs ${pb[i]}`));
    const state = opt.stateDict();
    assert.deepEqual([...state.keys()], ['w.momentum_buffer', 'b.momentum_buffer']);
    Array.from(state.get('w.momentum_buffer')!.data).forEach((v, i) => assert.ok(Math.abs(v - bw[i]) < 1e-6));

    // The state restores into a fresh optimizer, and a missing entry is named.
    const opt2 = new Sgd([['w', w], ['b', b]], { momentum: 0.9, weightDecay: 0.1, nesterov });
    opt2.loadStateDict(state, 'ckpt');
    assert.deepEqual(Array.from(opt2.stateDict().get('b.momentum_buffer')!.data), Array.from(state.get('b.momentum_buffer')!.data));
    state.delete('b.momentum_buffer');
    assert.throws(() => opt2.loadStateDict(state, 'ckpt'), /ckpt: optimizer state has no b\.momentum_buffer/);
    opt.dispose();
    opt2.dispose();
    w.dispose();
    b.dispose();
  }
});

test('an update leaks no tensors', async () => {
  await tf.setBackend('cpu');
  const w = tf.variable(tf.ones([4, 4]));
  const opt = new Sgd([['w', w]], { momentum: 0.9, weightDecay: 1e-4, nesterov: false });
  const g = tf.ones([4, 4]);
  opt.step(new Map([['w', g]]), 0.1);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) opt.step(new Map([['w', g]]), 0.1);
  assert.equal(tf.memory().numTensors, before);
  opt.dispose();
  tf.dispose([w, g]);
});

test('poly schedule with linear warmup is mmseg\'s formula', () => {
  const s = { policy: 'poly' as const, power: 0.9, min_lr: 1e-4, warmup_iters: 10, warmup_ratio: 0.1 };
  assert.ok(Math.abs(learningRate(0, 100, 0.01, s) - 0.01 * 0.1) < 1e-12);
  const at5 = (0.01 - 1e-4) * Math.pow(1 - 5 / 100, 0.9) + 1e-4;
  assert.ok(Math.abs(learningRate(5, 100, 0.01, s) - at5 * (1 - 0.5 * 0.9)) < 1e-12);
  assert.ok(Math.abs(learningRate(50, 100, 0.01, s) - ((0.01 - 1e-4) * Math.pow(0.5, 0.9) + 1e-4)) < 1e-12);
  assert.equal(learningRate(100, 100, 0.01, s), 1e-4);
  assert.equal(learningRate(7, 100, 0.01, { ...s, policy: 'constant', warmup_iters: 0 }), 0.01);
});
