import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { resolveConfig } from '../src/config/load-config';
import { buildModel } from '../src/models/build-model';
import { Sgd } from '../src/train/sgd';
import { TrainMetrics } from '../src/train/train-metrics';
import { trainStep } from '../src/train/train-step';
import { Rng } from '../src/util/rng';
import { loadBackend } from '../src/backend/load-backend';

function fixedBatch(n: number, h: number, w: number, classes: number) {
  const rng = new Rng(7);
  const labels = new Int32Array(n * h * w);
  const images = new Float32Array(n * h * w * 3);
  for (let i = 0; i < labels.length; i++) {
    // Left half class 1, right half class 2, a band of class 0 and some ignored pixels.
    const x = i % w;
    labels[i] = x < w / 2 - 2 ? 1 : x > w / 2 + 2 ? 2 : rng.next() < 0.2 ? 255 : 0;
    for (let c = 0; c < 3; c++) images[i * 3 + c] = (labels[i] === 255 ? 0 : labels[i] - 1) * (c + 1) * 0.5 + 0.3 * rng.normal();
  }
  return { images, labels, n, h, w, classes };
}

for (const backend of ['cpu', 'wasm'] as const) {
  test(`a training step leaks no tensors and learns (${backend})`, async () => {
    await loadBackend(backend);
    const cfg = resolveConfig({ overrides: ['model.backbone.base_channels=4', 'model.head.channels=8', 'model.aux.channels=4', 'model.head.pool_scales=[1,2]'] });
    const model = buildModel(cfg.model, 3, 0);
    const params = model.namedParameters();
    const sgd = new Sgd(params, { momentum: 0.9, weightDecay: 1e-4, nesterov: false });
    const metrics = new TrainMetrics(3, 255);
    const batch = fixedBatch(2, 24, 24, 3);
    const losses: number[] = [];
    const counts: number[] = [];
    for (let i = 0; i < 8; i++) {
      await trainStep(model, params, sgd, metrics, batch, { ignoreIndex: 255, auxWeight: 0.4, lr: 0.2, ctx: { training: true, seed: i } });
      counts.push(tf.memory().numTensors);
      losses.push(metrics.read().loss);
      metrics.resetLosses();
    }
    assert.deepEqual(new Set(counts.slice(1)).size, 1, `tensor count drifts: ${counts.join(' ')}`);
    assert.ok(losses.every(Number.isFinite));
    assert.ok(losses[7] < losses[0] * 0.8, `loss did not fall: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    metrics.dispose();
    sgd.dispose();
    model.dispose();
  });
}
