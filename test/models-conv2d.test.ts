// Conv2d: PyTorch geometry, and dilated convolution through spaceToBatchND that matches tfjs's own
// dilated forward and has a correct gradient (which tfjs's dilated Conv2D lacks).

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { Conv2d, conv2dTorch, convOutputSize } from '../src/models/conv2d';
import { randn } from './helpers/tensors';

function maxRelErr(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] / Math.max(1e-12, tf.max(tf.abs(b)).dataSync()[0]));
}

/** The dilated kernel written out as an ordinary (d(k-1)+1)^2 kernel with zeros between the taps. */
function spreadKernel(w: tf.Tensor4D, d: number): tf.Tensor4D {
  const [kh, kw, ci, co] = w.shape;
  const bh = d * (kh - 1) + 1;
  const bw = d * (kw - 1) + 1;
  const src = w.dataSync();
  const out = new Float32Array(bh * bw * ci * co);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      for (let k = 0; k < ci * co; k++) out[((i * d) * bw + j * d) * ci * co + k] = src[(i * kw + j) * ci * co + k];
    }
  }
  return tf.tensor4d(out, [bh, bw, ci, co]);
}

/** Gathers the taps of a spread kernel's gradient back into a k x k kernel. */
function gatherTaps(big: tf.Tensor4D, kh: number, kw: number, d: number): tf.Tensor4D {
  const [, bw, ci, co] = big.shape;
  const src = big.dataSync();
  const out = new Float32Array(kh * kw * ci * co);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      for (let k = 0; k < ci * co; k++) out[(i * kw + j) * ci * co + k] = src[((i * d) * bw + j * d) * ci * co + k];
    }
  }
  return tf.tensor4d(out, [kh, kw, ci, co]);
}

before(async () => {
  await tf.setBackend('cpu');
});

describe('convOutputSize', () => {
  test('follows PyTorch floor((L + 2p - d(k-1) - 1)/s) + 1', () => {
    assert.equal(convOutputSize(33, 7, { stride: 2, padding: 3, dilation: 1 }), 17);
    assert.equal(convOutputSize(13, 3, { stride: 1, padding: 4, dilation: 4 }), 13);
    assert.equal(convOutputSize(9, 3, { stride: 1, padding: 1, dilation: 2 }), 7);
    assert.equal(convOutputSize(10, 1, { stride: 2, padding: 0, dilation: 1 }), 5);
  });
});

describe('conv2dTorch forward', () => {
  const cases = [
    { h: 9, w: 11, d: 2, p: 2 },
    { h: 13, w: 13, d: 2, p: 2 },
    { h: 9, w: 11, d: 4, p: 4 },
    { h: 13, w: 13, d: 4, p: 4 },
    { h: 9, w: 11, d: 2, p: 1 }, // padding below the dilation: output shrinks
    { h: 13, w: 10, d: 4, p: 0 },
  ];
  for (const { h, w, d, p } of cases) {
    test(`dilation ${d}, padding ${p} on ${h}x${w} equals tf.conv2d with dilations`, () => {
      tf.tidy(() => {
        const x = randn([2, h, w, 3], 1) as tf.Tensor4D;
        const f = randn([3, 3, 3, 5], 2) as tf.Tensor4D;
        const ours = conv2dTorch(x, f, { stride: 1, padding: p, dilation: d });
        const padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]);
        const ref = tf.conv2d(padded, f, 1, 'valid', 'NHWC', d);
        assert.deepEqual(ours.shape, [2, convOutputSize(h, 3, { stride: 1, padding: p, dilation: d }),
          convOutputSize(w, 3, { stride: 1, padding: p, dilation: d }), 5]);
        assert.deepEqual(ours.shape, ref.shape);
        assert.ok(maxRelErr(ours, ref) < 1e-5, `max rel err ${maxRelErr(ours, ref)}`);
      });
    });
  }

  test('stride 2 with symmetric padding matches the explicitly padded valid conv', () => {
    tf.tidy(() => {
      const x = randn([1, 10, 9, 2], 3) as tf.Tensor4D;
      const f = randn([7, 7, 2, 4], 4) as tf.Tensor4D;
      const ours = conv2dTorch(x, f, { stride: 2, padding: 3, dilation: 1 });
      const ref = tf.conv2d(tf.pad(x, [[0, 0], [3, 3], [3, 3], [0, 0]]), f, 2, 'valid');
      assert.deepEqual(ours.shape, [1, 5, 5, 4]);
      assert.ok(maxRelErr(ours, ref) < 1e-6);
    });
  });

  test('refuses a dilated strided conv and mismatched channels', () => {
    tf.tidy(() => {
      const x = tf.zeros([1, 9, 9, 2]) as tf.Tensor4D;
      assert.throws(() => conv2dTorch(x, tf.zeros([3, 3, 2, 2]) as tf.Tensor4D, { stride: 2, padding: 2, dilation: 2 }),
        /dilation 2 with stride 2/);
      assert.throws(() => conv2dTorch(x, tf.zeros([3, 3, 3, 2]) as tf.Tensor4D, { stride: 1, padding: 1, dilation: 1 }),
        /3 channels|2 channels/);
    });
  });
});

describe('conv2dTorch gradient', () => {
  for (const { h, w, d } of [{ h: 9, w: 11, d: 2 }, { h: 9, w: 11, d: 4 }, { h: 13, w: 13, d: 4 }, { h: 13, w: 10, d: 2 }]) {
    test(`dilation ${d} on ${h}x${w}: dx and dfilter equal the undilated spread-kernel conv's`, () => {
      tf.tidy(() => {
        const x = randn([2, h, w, 3], 5) as tf.Tensor4D;
        const f = randn([3, 3, 3, 4], 6) as tf.Tensor4D;
        const g = { stride: 1, padding: d, dilation: d };
        const outShape = [2, convOutputSize(h, 3, g), convOutputSize(w, 3, g), 4];
        const r = randn(outShape, 7);
        const loss = (xx: tf.Tensor, ff: tf.Tensor) =>
          tf.sum(tf.mul(conv2dTorch(xx as tf.Tensor4D, ff as tf.Tensor4D, g), r)) as tf.Scalar;
        const [dx, df] = tf.grads(loss)([x, f]);

        const big = spreadKernel(f, d);
        const refLoss = (xx: tf.Tensor, bb: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, bb as tf.Tensor4D, 1, d), r)) as tf.Scalar;
        const [rdx, rbig] = tf.grads(refLoss)([x, big]);
        const rdf = gatherTaps(rbig as tf.Tensor4D, 3, 3, d);
        assert.ok(maxRelErr(dx, rdx) < 1e-5, `dx rel err ${maxRelErr(dx, rdx)}`);
        assert.ok(maxRelErr(df, rdf) < 1e-5, `dfilter rel err ${maxRelErr(df, rdf)}`);
      });
    });
  }

  test('a finite difference agrees with the gradient of one filter tap and one input pixel', () => {
    tf.tidy(() => {
      const x = randn([1, 9, 11, 2], 8) as tf.Tensor4D;
      const f = randn([3, 3, 2, 2], 9) as tf.Tensor4D;
      const g = { stride: 1, padding: 2, dilation: 2 };
      const r = randn([1, 9, 11, 2], 10);
      const loss = (xx: tf.Tensor, ff: tf.Tensor) =>
        tf.sum(tf.mul(conv2dTorch(xx as tf.Tensor4D, ff as tf.Tensor4D, g), r)) as tf.Scalar;
      const [dx, df] = tf.grads(loss)([x, f]);
      // The loss is linear in each argument, so a unit step gives the exact directional derivative
      // up to float32 rounding.
      const bump = (t: tf.Tensor, index: number) => {
        const v = t.dataSync().slice();
        v[index] += 1;
        return tf.tensor(v, t.shape);
      };
      const base = loss(x, f).dataSync()[0];
      for (const i of [0, 17, 35]) {
        const fd = loss(x, bump(f, i)).dataSync()[0] - base;
        assert.ok(Math.abs(fd - df.dataSync()[i]) < 1e-3 * Math.max(1, Math.abs(fd)), `filter ${i}: ${fd} vs ${df.dataSync()[i]}`);
      }
      for (const i of [0, 50, 197]) {
        const fd = loss(bump(x, i), f).dataSync()[0] - base;
        assert.ok(Math.abs(fd - dx.dataSync()[i]) < 1e-3 * Math.max(1, Math.abs(fd)), `input ${i}: ${fd} vs ${dx.dataSync()[i]}`);
      }
    });
  });
});

describe('Conv2d module', () => {
  test('holds an HWIO weight and a bias, and adds the bias', () => {
    const conv = new Conv2d(3, 4, 3, { padding: 1, bias: true });
    conv.initialize(1);
    assert.deepEqual(conv.namedParameters().map(([n, v]) => [n, v.shape]), [['weight', [3, 3, 3, 4]], ['bias', [4]]]);
    tf.tidy(() => {
      conv.bias!.assign(tf.tensor1d([1, 2, 3, 4]));
      const x = randn([1, 5, 5, 3], 11) as tf.Tensor4D;
      const y = conv.forward(x);
      const ref = tf.add(tf.conv2d(x, conv.weight, 1, 1), tf.tensor1d([1, 2, 3, 4]));
      assert.ok(maxRelErr(y, ref) < 1e-6);
    });
    conv.dispose();
  });
});
