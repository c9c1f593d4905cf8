// batchNormTrain / batchNormInfer (src/backend/batch-norm.ts) against plain tfjs ops differentiated
// by tfjs on the cpu backend. Every path is checked: wasm with the SIMD loops (channels % 4 == 0),
// wasm with the JS loops (SIMD switched off, or channels % 4 != 0), the cpu kernels, and the
// stock-op fallback used where the kernels are not registered.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { loadBackend } from '../src/backend/load-backend';
import { batchNormInfer, batchNormTrain, type BatchNormReducer } from '../src/backend/batch-norm';
import { registerSegdistKernels, unregisterSegdistKernels } from '../src/backend/register-wasm-kernels';
import { disableSimdLoops } from '../src/backend/wasm-simd';
import { randomData, relativeError } from './helpers/compare';
import { onBackend } from './helpers/tensors';

const TOLERANCE = 1e-4;
const EPS = 1e-5;

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  const err = relativeError(actual, expected);
  assert.ok(err < TOLERANCE, `${what}: relative error ${err.toExponential(2)} >= ${TOLERANCE}`);
}

interface Case {
  name: string;
  shape: [number, number, number, number];
  relu: boolean;
  residual: boolean;
}

const CASES: Case[] = [
  { name: '8 channels', shape: [2, 5, 6, 8], relu: false, residual: false },
  { name: '8 channels + relu', shape: [2, 5, 6, 8], relu: true, residual: false },
  { name: '16 channels + residual', shape: [3, 4, 5, 16], relu: false, residual: true },
  { name: '16 channels + residual + relu', shape: [3, 4, 5, 16], relu: true, residual: true },
  { name: '4 channels, batch 1', shape: [1, 7, 3, 4], relu: true, residual: false },
  { name: '3 channels (no SIMD) + relu', shape: [2, 6, 5, 3], relu: true, residual: false },
  { name: '6 channels (no SIMD) + residual + relu', shape: [2, 3, 7, 6], relu: true, residual: true },
  { name: '5 channels (no SIMD)', shape: [4, 3, 3, 5], relu: false, residual: false },
  // More rows than one SUM_CHUNK_ROWS chunk, so the float64 chunk sums are exercised.
  { name: '12 channels, 600 rows + residual + relu', shape: [2, 15, 20, 12], relu: true, residual: true },
];

interface Data { x: Float32Array; gamma: Float32Array; beta: Float32Array; residual: Float32Array; r: Float32Array }

function dataFor(c: Case, seed: number): Data {
  const n = tf.util.sizeFromShape(c.shape);
  const ch = c.shape[3];
  // An offset mean and a scale per channel, like conv outputs.
  const x = randomData(n, seed, -2, 3);
  for (let i = 0; i < n; i++) x[i] = x[i] * (1 + (i % ch)) + (i % ch) - 2;
  return {
    x,
    gamma: randomData(ch, seed + 1, 0.5, 1.5),
    beta: randomData(ch, seed + 2, -0.5, 0.5),
    residual: randomData(n, seed + 3, -1, 1),
    r: randomData(n, seed + 4, -1, 1),
  };
}

interface Result { y: Float32Array; mean: Float32Array; variance: Float32Array; grads: Float32Array[] }

/** y, statistics and d(sum(y * r))/d(x, gamma, beta[, residual]) through batchNormTrain. */
function ours(c: Case, d: Data, reducer?: BatchNormReducer): Result & { count: number } {
  return tf.tidy(() => {
    const x = tf.tensor4d(d.x, c.shape);
    const gamma = tf.tensor1d(d.gamma);
    const beta = tf.tensor1d(d.beta);
    const residual = c.residual ? tf.tensor4d(d.residual, c.shape) : undefined;
    const r = tf.tensor4d(d.r, c.shape);
    let stats: { mean: Float32Array; variance: Float32Array; count: number } | undefined;
    let y: Float32Array | undefined;
    const f = (...ts: tf.Tensor[]) => {
      const out = batchNormTrain(ts[0] as tf.Tensor4D, ts[1] as tf.Tensor1D, ts[2] as tf.Tensor1D, {
        eps: EPS, relu: c.relu, residual: ts[3] as tf.Tensor4D | undefined, reducer, name: 'test.bn',
      });
      stats = { mean: out.mean.dataSync() as Float32Array, variance: out.variance.dataSync() as Float32Array, count: out.count };
      y = out.y.dataSync() as Float32Array;
      return tf.sum(tf.mul(out.y, r)) as tf.Scalar;
    };
    const inputs = residual ? [x, gamma, beta, residual] : [x, gamma, beta];
    const grads = tf.grads(f)(inputs).map((g) => g.dataSync() as Float32Array);
    return { y: y!, ...stats!, grads };
  });
}

/** The same from plain ops, differentiated by tfjs. */
function reference(c: Case, d: Data): Result {
  return tf.tidy(() => {
    const x = tf.tensor4d(d.x, c.shape);
    const gamma = tf.tensor1d(d.gamma);
    const beta = tf.tensor1d(d.beta);
    const residual = c.residual ? tf.tensor4d(d.residual, c.shape) : undefined;
    const r = tf.tensor4d(d.r, c.shape);
    const axes = [0, 1, 2];
    const forward = (xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor, res?: tf.Tensor) => {
      const mean = tf.mean(xs, axes);
      const variance = tf.mean(tf.square(tf.sub(xs, mean)), axes);
      let y = tf.add(tf.mul(tf.div(tf.sub(xs, mean), tf.sqrt(tf.add(variance, EPS))), g), b);
      if (res) y = tf.add(y, res);
      return { y: c.relu ? tf.relu(y) : y, mean, variance };
    };
    const out = forward(x, gamma, beta, residual);
    const f = (...ts: tf.Tensor[]) => tf.sum(tf.mul(forward(ts[0], ts[1], ts[2], ts[3]).y, r)) as tf.Scalar;
    const inputs = residual ? [x, gamma, beta, residual] : [x, gamma, beta];
    const grads = tf.grads(f)(inputs).map((g) => g.dataSync() as Float32Array);
    return {
      y: out.y.dataSync() as Float32Array, mean: out.mean.dataSync() as Float32Array,
      variance: out.variance.dataSync() as Float32Array, grads,
    };
  });
}

function compare(got: Result, want: Result, c: Case): void {
  assertClose(got.y, want.y, 'y');
  assertClose(got.mean, want.mean, 'mean');
  assertClose(got.variance, want.variance, 'variance');
  const names = ['dx', 'dgamma', 'dbeta', 'dresidual'];
  assert.equal(got.grads.length, c.residual ? 4 : 3);
  got.grads.forEach((g, i) => assertClose(g, want.grads[i], names[i]));
}

let wasm: BackendWasm;

before(async () => {
  assert.equal(await loadBackend('wasm'), 'wasm');
  wasm = tf.backend() as BackendWasm;
  registerSegdistKernels();
});

after(() => {
  disableSimdLoops(false);
  registerSegdistKernels();
});

describe('batchNormTrain against plain ops on cpu', () => {
  CASES.forEach((c, i) => {
    test(c.name, async () => {
      const d = dataFor(c, 100 + 10 * i);
      const want = await onBackend('cpu', () => {
        unregisterSegdistKernels();
        try {
          return reference(c, d);
        } finally {
          registerSegdistKernels();
        }
      });
      compare(await onBackend('wasm', () => ours(c, d)), want, c);
      disableSimdLoops(true);
      try {
        compare(await onBackend('wasm', () => ours(c, d)), want, c);
      } finally {
        disableSimdLoops(false);
      }
      compare(await onBackend('cpu', () => ours(c, d)), want, c);
      unregisterSegdistKernels();
      try {
        compare(await onBackend('cpu', () => ours(c, d)), want, c);
        compare(await onBackend('wasm', () => ours(c, d)), want, c);
      } finally {
        registerSegdistKernels();
      }
    });
  });

  test('the SIMD and JS loops give the same results on wasm', async () => {
    const c = CASES[3];
    const d = dataFor(c, 7);
    const simd = await onBackend('wasm', () => ours(c, d));
    disableSimdLoops(true);
    let js: Result;
    try {
      js = await onBackend('wasm', () => ours(c, d));
    } finally {
      disableSimdLoops(false);
    }
    assert.ok(relativeError(simd.y, js.y) < 1e-6, 'y');
    js.grads.forEach((g, i) => assert.ok(relativeError(simd.grads[i], g) < 1e-5, `grad ${i}`));
  });
});

describe('SyncBN plumbing', () => {
  test('a reducer that adds an identical second trainer leaves y and dx as they are', async () => {
    const c = CASES[1];
    const d = dataFor(c, 31);
    const names: string[] = [];
    const twice: BatchNormReducer = {
      allreduceSum(name, data) {
        names.push(name);
        return data.map((v) => 2 * v);
      },
    };
    for (const backend of ['wasm', 'cpu']) {
      names.length = 0;
      const local = await onBackend(backend, () => ours(c, d));
      const synced = await onBackend(backend, () => ours(c, d, twice));
      assert.deepEqual(names, ['test.bn/fwd', 'test.bn/bwd']);
      const rows = c.shape[0] * c.shape[1] * c.shape[2];
      assert.equal(synced.count, 2 * rows, 'count is the global one');
      assertClose(synced.y, local.y, 'y');
      assertClose(synced.mean, local.mean, 'mean');
      assertClose(synced.variance, local.variance, 'variance');
      assertClose(synced.grads[0], local.grads[0], 'dx');
      // dgamma / dbeta stay local sums: the trainer's gradient averaging combines them.
      assertClose(synced.grads[1], local.grads[1], 'dgamma');
      assertClose(synced.grads[2], local.grads[2], 'dbeta');
    }
  });

  test('a reducer returning the wrong length is an error naming the layer', async () => {
    await tf.setBackend('wasm');
    const bad: BatchNormReducer = { allreduceSum: () => new Float32Array(1) };
    assert.throws(() => tf.tidy(() => void batchNormTrain(tf.ones([2, 2, 2, 4]) as tf.Tensor4D, tf.ones([4]) as tf.Tensor1D,
                                                     tf.zeros([4]) as tf.Tensor1D, { eps: EPS, reducer: bad, name: 'l.bn' })),
                  /SyncBN 'l\.bn': reducer returned 1 values, expected 9/);
  });
});

describe('batchNormInfer', () => {
  for (const backend of ['wasm', 'cpu']) {
    test(`matches plain ops on ${backend}, with residual and relu`, async () => {
      const shape: [number, number, number, number] = [2, 3, 4, 8];
      const d = dataFor({ name: '', shape, relu: true, residual: true }, 55);
      const mean = randomData(8, 60, -1, 1);
      const variance = randomData(8, 61, 0.5, 2);
      const run = (fused: boolean) => tf.tidy(() => {
        const x = tf.tensor4d(d.x, shape);
        const m = tf.tensor1d(mean);
        const v = tf.tensor1d(variance);
        const g = tf.tensor1d(d.gamma);
        const b = tf.tensor1d(d.beta);
        const res = tf.tensor4d(d.residual, shape);
        if (fused) return batchNormInfer(x, m, v, g, b, { eps: EPS, relu: true, residual: res }).dataSync();
        return tf.relu(tf.add(tf.add(tf.mul(tf.div(tf.sub(x, m), tf.sqrt(tf.add(v, EPS))), g), b), res)).dataSync();
      });
      const want = await onBackend('cpu', () => run(false));
      assertClose(await onBackend(backend, () => run(true)), want, 'y');
    });
  }
});

describe('errors and memory', () => {
  test('one value per channel is refused, as PyTorch does', async () => {
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    assert.throws(() => tf.tidy(() => void batchNormTrain(tf.ones([1, 1, 1, 4]) as tf.Tensor4D, tf.ones([4]) as tf.Tensor1D,
                                                     tf.zeros([4]) as tf.Tensor1D, { eps: EPS, name: 'one' })),
                  /batchNormTrain 'one': expected more than 1 value per channel/);
    assert.equal(tf.memory().numTensors, before);
  });

  test('mismatched gamma and residual shapes are refused', async () => {
    await tf.setBackend('cpu');
    assert.throws(() => tf.tidy(() => void batchNormTrain(tf.ones([2, 2, 2, 4]) as tf.Tensor4D, tf.ones([3]) as tf.Tensor1D,
                                                     tf.zeros([4]) as tf.Tensor1D, { eps: EPS })), /x has 4 channels, gamma 3/);
    assert.throws(() => tf.tidy(() => void batchNormTrain(tf.ones([2, 2, 2, 4]) as tf.Tensor4D, tf.ones([4]) as tf.Tensor1D,
                                                     tf.zeros([4]) as tf.Tensor1D,
                                                     { eps: EPS, residual: tf.ones([2, 2, 1, 4]) as tf.Tensor4D })),
                  /residual shape \[2,2,1,4\] differs/);
  });

  test('repeated forward and backward leak no tensors and no wasm data ids', async () => {
    await tf.setBackend('wasm');
    const c = CASES[3];
    const d = dataFor(c, 77);
    ours(c, d);
    const tensors = tf.memory().numTensors;
    const ids = wasm.numDataIds();
    for (let i = 0; i < 3; i++) {
      ours(c, d);
      ours(CASES[6], dataFor(CASES[6], 78));
      assert.equal(tf.memory().numTensors, tensors, `numTensors grew on repeat ${i}`);
      assert.equal(wasm.numDataIds(), ids, `wasm data ids grew on repeat ${i}`);
    }
  });
});
