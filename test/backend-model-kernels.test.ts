// A whole training step computed with segdist's kernels (src/backend: fused BN+ReLU+residual,
// softmax cross-entropy, separable resize/pool, dilated conv gradients) must equal the same step on
// stock tfjs ops: the same loss, the same gradient for every parameter, the same BN running
// statistics, the same eval-mode outputs. A small PSPNet-ResNet-18 runs on the cpu backend without
// our kernels (the reference), then on cpu and on wasm with them.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadBackend } from '../src/backend/load-backend';
import { registerSegdistKernels, unregisterSegdistKernels } from '../src/backend/register-wasm-kernels';
import { buildModel, type ModelConfig } from '../src/models/build-model';
import { crossEntropy } from '../src/train/cross-entropy';
import { Rng } from '../src/util/rng';
import { relativeError } from './helpers/compare';

const TOLERANCE = 1e-4;
const NUM_CLASSES = 4;

const CONFIG: ModelConfig = {
  norm: 'bn',
  align_corners: true,
  backbone: { type: 'resnet', depth: 18, stem: 'v1b', output_stride: 8, base_channels: 4 },
  head: { type: 'psp', channels: 8, dropout: 0.1, pool_scales: [1, 2, 3, 6] },
  aux: { enabled: true, channels: 4, weight: 0.4, dropout: 0.1 },
};

interface StepResult {
  loss: number;
  grads: Map<string, Float32Array>;
  buffers: Map<string, Float32Array>;
  evalOut: Float32Array;
}

/** One training step's loss and gradients (as trainStep computes them), then an eval forward. */
function step(size: number, batch: number): StepResult {
  {
    const model = buildModel(CONFIG, NUM_CLASSES, 3);
    const rng = new Rng(11);
    const images = Float32Array.from({ length: batch * size * size * 3 }, () => rng.uniform(-2, 2));
    const labels = Int32Array.from({ length: batch * size * size }, (_, i) =>
      (rng.next() < 0.05 ? 255 : ((i % size) >> 3) % NUM_CLASSES));
    const trainable = model.namedParameters();
    let result: Omit<StepResult, 'buffers'> | undefined;
    tf.tidy(() => {
      const x = tf.tensor4d(images, [batch, size, size, 3]);
      const y = tf.tensor3d(labels, [batch, size, size], 'int32');
      const { value, grads } = tf.variableGrads(() => {
        const { out, aux } = model.forward(x, { training: true, seed: 5 });
        return tf.add(crossEntropy(out, y, 255), tf.mul(crossEntropy(aux!, y, 255), 0.4)) as tf.Scalar;
      }, trainable.map(([, v]) => v));
      const byName = new Map<string, Float32Array>();
      for (const [name, v] of trainable) byName.set(name, grads[v.name].dataSync() as Float32Array);
      const evalOut = model.forward(x, { training: false, seed: 0 }).out.dataSync() as Float32Array;
      result = { loss: value.dataSync()[0], grads: byName, evalOut };
    });
    const buffers = new Map(model.namedBuffers().map(([n, v]) => [n, v.dataSync() as Float32Array]));
    model.dispose();
    return { ...result!, buffers };
  }
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function compare(got: StepResult, want: StepResult): void {
  assert.ok(Math.abs(got.loss - want.loss) <= TOLERANCE * Math.abs(want.loss), `loss ${got.loss} vs ${want.loss}`);
  assert.equal(got.grads.size, want.grads.size);
  // A parameter whose true gradient is ~0 (e.g. the conv before a BN over only a few values)
  // holds rounding noise on both sides: measure errors against at least 1% of the typical scale.
  const scales = [...want.grads.values()].map(maxAbs).sort((a, b) => a - b);
  const floor = 0.01 * scales[scales.length >> 1];
  for (const [name, g] of want.grads) {
    const ref = Math.max(maxAbs(g), floor);
    const err = relativeError(got.grads.get(name)!, g) * maxAbs(g) / ref;
    assert.ok(err < TOLERANCE, `gradient of ${name}: relative error ${err.toExponential(2)}`);
  }
  for (const [name, b] of want.buffers) {
    const err = relativeError(got.buffers.get(name)!, b);
    assert.ok(err < TOLERANCE, `buffer ${name}: relative error ${err.toExponential(2)}`);
  }
  const err = relativeError(got.evalOut, want.evalOut);
  assert.ok(err < TOLERANCE, `eval-mode logits: relative error ${err.toExponential(2)}`);
}

let reference: StepResult;

before(async () => {
  assert.equal(await loadBackend('wasm'), 'wasm');
  await tf.setBackend('cpu');
  unregisterSegdistKernels();
  try {
    reference = step(32, 2);
  } finally {
    registerSegdistKernels();
  }
});

describe("segdist's kernels compute the same training step as stock tfjs ops", () => {
  test('cpu with our kernels, 32x32 batch 2', async () => {
    await tf.setBackend('cpu');
    compare(step(32, 2), reference);
  });

  test('wasm with our kernels, 32x32 batch 2, no tensor left behind', async () => {
    await tf.setBackend('wasm');
    const tensors = tf.memory().numTensors;
    compare(step(32, 2), reference);
    assert.equal(tf.memory().numTensors, tensors, 'tensors leaked');
  });
});
