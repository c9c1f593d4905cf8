// Depthwise convolution with dilation: forward and both gradients against a reference computed
// another way (a dense convolution whose filter is zero off the channel diagonal, through conv2dTorch
// and its own dilated-conv gradient), on cpu and wasm; a direct loop for the forward; parameter
// layout; memory.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { depthwiseConv2d, depthwiseOutputSize } from '../src/backend/depthwise-conv2d';
import { loadBackend } from '../src/backend/load-backend';
import { conv2dTorch } from '../src/models/conv2d';
import { Conv2d } from '../src/models/conv2d';
import { randomData, relativeError } from './helpers/compare';

/** The dense [kh, kw, C, C] filter equal to a depthwise [kh, kw, C, 1] one. */
function blockDiagonal(filter: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, c] = filter.shape;
  const src = filter.dataSync();
  const out = new Float32Array(kh * kw * c * c);
  for (let t = 0; t < kh * kw; t++) for (let ch = 0; ch < c; ch++) out[(t * c + ch) * c + ch] = src[t * c + ch];
  return tf.tensor4d(out, [kh, kw, c, c]);
}

/** The channel diagonal of a dense filter gradient, as a depthwise one. */
function diagonal(dense: tf.Tensor4D): Float32Array {
  const [kh, kw, c] = dense.shape;
  const src = dense.dataSync();
  const out = new Float32Array(kh * kw * c);
  for (let t = 0; t < kh * kw; t++) for (let ch = 0; ch < c; ch++) out[t * c + ch] = src[(t * c + ch) * c + ch];
  return out;
}

/** The definition, as loops. */
function loopForward(x: tf.Tensor4D, f: tf.Tensor4D, p: number, d: number): Float32Array {
  const [n, h, w, c] = x.shape;
  const [kh, kw] = f.shape;
  const xs = x.dataSync();
  const fs = f.dataSync();
  const oh = depthwiseOutputSize(h, kh, { padding: p, dilation: d });
  const ow = depthwiseOutputSize(w, kw, { padding: p, dilation: d });
  const out = new Float32Array(n * oh * ow * c);
  for (let b = 0; b < n; b++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) for (let ch = 0; ch < c; ch++) {
    let s = 0;
    for (let ky = 0; ky < kh; ky++) for (let kx = 0; kx < kw; kx++) {
      const y = i + ky * d - p;
      const z = j + kx * d - p;
      if (y >= 0 && y < h && z >= 0 && z < w) s += xs[((b * h + y) * w + z) * c + ch] * fs[(ky * kw + kx) * c + ch];
    }
    out[((b * oh + i) * ow + j) * c + ch] = s;
  }
  return out;
}

const CASES = [
  { h: 7, w: 9, k: 3, d: 1, p: 1 },
  { h: 9, w: 7, k: 3, d: 2, p: 2 },
  { h: 11, w: 13, k: 3, d: 4, p: 4 },
  { h: 9, w: 11, k: 3, d: 12, p: 12 }, // every outer tap wholly in the padding
  { h: 13, w: 11, k: 3, d: 6, p: 6 }, // outer taps overlap a few rows
  { h: 9, w: 11, k: 3, d: 2, p: 1 }, // padding below the reach: output shrinks
  { h: 8, w: 10, k: 3, d: 2, p: 5 }, // padding beyond the reach: output grows
  { h: 10, w: 9, k: 5, d: 3, p: 6 },
];

function checkAgainstDense(backend: string): void {
  for (const { h, w, k, d, p } of CASES) {
    test(`${backend}: k${k} d${d} p${p} on ${h}x${w}: output, dx and dw equal the block-diagonal dense conv`, () => {
      tf.tidy(() => {
        const c = 5;
        const x = tf.tensor4d(randomData(2 * h * w * c, 1), [2, h, w, c]);
        const f = tf.tensor4d(randomData(k * k * c, 2), [k, k, c, 1]);
        const dense = blockDiagonal(f);
        const oh = depthwiseOutputSize(h, k, { padding: p, dilation: d });
        const ow = depthwiseOutputSize(w, k, { padding: p, dilation: d });
        const r = tf.tensor4d(randomData(2 * oh * ow * c, 3), [2, oh, ow, c]);
        const ours = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, { padding: p, dilation: d }), r)));
        const ref = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(conv2dTorch(a as tf.Tensor4D, b as tf.Tensor4D, { stride: 1, padding: p, dilation: d }), r)));
        const y = depthwiseConv2d(x, f, { padding: p, dilation: d });
        assert.deepEqual(y.shape, [2, oh, ow, c]);
        const yRef = conv2dTorch(x, dense, { stride: 1, padding: p, dilation: d });
        assert.ok(relativeError(y.dataSync(), yRef.dataSync()) < 1e-5, 'forward');
        assert.ok(relativeError(y.dataSync(), loopForward(x, f, p, d)) < 1e-5, 'forward vs loops');
        const [dx, dw] = ours([x, f]);
        const [dxRef, dwDense] = ref([x, dense]);
        assert.deepEqual(dw.shape, [k, k, c, 1]);
        assert.ok(relativeError(dx.dataSync(), dxRef.dataSync()) < 1e-5, 'dx');
        assert.ok(relativeError(dw.dataSync(), diagonal(dwDense as tf.Tensor4D)) < 1e-5, 'dw');
      });
    });
  }
}

describe('depthwiseConv2d on cpu', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });
  checkAgainstDense('cpu');

  test('refuses a filter that is not [kh, kw, C, 1] and an input too small, naming the sizes', () => {
    tf.tidy(() => {
      const x = tf.zeros([1, 5, 5, 4]) as tf.Tensor4D;
      assert.throws(() => depthwiseConv2d(x, tf.zeros([3, 3, 3, 1]) as tf.Tensor4D, { padding: 1, dilation: 1 }),
        /input has 4 channels, filter is \[3,3,3,1\]/);
      assert.throws(() => depthwiseConv2d(x, tf.zeros([3, 3, 4, 1]) as tf.Tensor4D, { padding: 0, dilation: 3 }),
        /input 5x5 too small for kernel 3x3 with padding 0, dilation 3/);
    });
  });
});

describe('depthwiseConv2d on wasm', () => {
  before(async () => {
    await loadBackend('wasm');
  });
  checkAgainstDense('wasm');
});

describe('Conv2d with groups = channels (depthwise)', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  test('weight [k, k, 1, C] (PyTorch [C, 1, k, k] by the (2, 3, 1, 0) transpose), optional bias, shape kept at padding = dilation', () => {
    const conv = new Conv2d(6, 6, 3, { padding: 12, dilation: 12, groups: 6, bias: true });
    conv.initialize(3);
    assert.deepEqual(new Map(conv.namedParameters().map(([n, v]) => [n, v.shape])),
      new Map([['weight', [3, 3, 1, 6]], ['bias', [6]]]));
    // Values at [ky, kx, 0, c] act on channel c: compare with the op on the reshaped weight.
    tf.tidy(() => {
      conv.bias!.assign(tf.tensor1d([1, 2, 3, 4, 5, 6]));
      const x = tf.tensor4d(randomData(2 * 9 * 10 * 6, 4), [2, 9, 10, 6]);
      const y = conv.forward(x);
      assert.deepEqual(y.shape, [2, 9, 10, 6]);
      const ref = tf.add(depthwiseConv2d(x, tf.reshape(conv.weight, [3, 3, 6, 1]), { padding: 12, dilation: 12 }),
        tf.tensor1d([1, 2, 3, 4, 5, 6]));
      assert.ok(relativeError(y.dataSync(), ref.dataSync()) === 0);
    });
    const noBias = new Conv2d(6, 6, 3, { groups: 6, bias: false });
    assert.deepEqual(noBias.namedParameters().map(([n]) => n), ['weight']);
    conv.dispose();
    noBias.dispose();
  });

  test('a training step leaks no tensors', () => {
    const conv = new Conv2d(4, 4, 3, { padding: 2, dilation: 2, groups: 4 });
    conv.initialize(0);
    const x = tf.tensor4d(randomData(2 * 6 * 7 * 4, 5), [2, 6, 7, 4]);
    const counts: number[] = [];
    for (let it = 0; it < 3; it++) {
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => tf.sum(tf.square(conv.forward(x))) as tf.Scalar, conv.parameters());
        for (const g of Object.values(grads)) assert.ok(Number.isFinite(tf.sum(g).dataSync()[0]));
      });
      counts.push(tf.memory().numTensors);
    }
    assert.equal(counts[1], counts[0]);
    assert.equal(counts[2], counts[0]);
    x.dispose();
    conv.dispose();
  });
});
