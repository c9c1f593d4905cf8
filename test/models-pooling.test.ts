// Spatial ops with PyTorch semantics: adaptive average pooling (exact bins), bilinear resize for
// both align_corners (forward = PyTorch's formula, gradient = its exact adjoint), ResNet's max pool
// and ResNet-v1d's ceil-mode average pool.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { adaptiveAvgPool2d, adaptivePoolMatrix } from '../src/models/adaptive-avg-pool';
import { bilinearMatrix, resizeBilinear } from '../src/models/resize';
import { MaxPool2d } from '../src/models/max-pool';
import { AvgPool2d } from '../src/models/avg-pool';
import { randn } from './helpers/tensors';

function maxAbs(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** Reads element [n, i, j, c] of a NHWC array. */
function at(v: Float32Array | Int32Array | Uint8Array, shape: number[], n: number, i: number, j: number, c: number): number {
  return v[((n * shape[1] + i) * shape[2] + j) * shape[3] + c];
}

/** PyTorch's adaptive_avg_pool2d, written out loop by loop. */
function refAdaptivePool(x: tf.Tensor4D, oh: number, ow: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const v = x.dataSync();
  const out = new Float32Array(n * oh * ow * c);
  for (let b = 0; b < n; b++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) for (let k = 0; k < c; k++) {
    const h0 = Math.floor((i * h) / oh);
    const h1 = Math.ceil(((i + 1) * h) / oh);
    const w0 = Math.floor((j * w) / ow);
    const w1 = Math.ceil(((j + 1) * w) / ow);
    let s = 0;
    for (let y = h0; y < h1; y++) for (let z = w0; z < w1; z++) s += at(v, x.shape, b, y, z, k);
    out[((b * oh + i) * ow + j) * c + k] = s / ((h1 - h0) * (w1 - w0));
  }
  return tf.tensor4d(out, [n, oh, ow, c]);
}

/** PyTorch's upsample_bilinear2d (explicit output size), written out loop by loop. */
function refBilinear(x: tf.Tensor4D, oh: number, ow: number, alignCorners: boolean): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const v = x.dataSync();
  const src = (d: number, inS: number, outS: number) => alignCorners
    ? (outS > 1 ? (d * (inS - 1)) / (outS - 1) : 0)
    : Math.max(((d + 0.5) * inS) / outS - 0.5, 0);
  const out = new Float32Array(n * oh * ow * c);
  for (let b = 0; b < n; b++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) for (let k = 0; k < c; k++) {
    const sy = src(i, h, oh);
    const sx = src(j, w, ow);
    const y0 = Math.floor(sy);
    const x0 = Math.floor(sx);
    const y1 = y0 < h - 1 ? y0 + 1 : y0;
    const x1 = x0 < w - 1 ? x0 + 1 : x0;
    const ly = sy - y0;
    const lx = sx - x0;
    out[((b * oh + i) * ow + j) * c + k] =
      (1 - ly) * ((1 - lx) * at(v, x.shape, b, y0, x0, k) + lx * at(v, x.shape, b, y0, x1, k)) +
      ly * ((1 - lx) * at(v, x.shape, b, y1, x0, k) + lx * at(v, x.shape, b, y1, x1, k));
  }
  return tf.tensor4d(out, [n, oh, ow, c]);
}

/**
 * The exact adjoint test for a linear op f: dx[i] = <dy, f(e_i)>. Pushing every basis image through
 * f at once (as a batch) gives the whole Jacobian, so the gradient check has no step size.
 */
function checkAdjoint(f: (t: tf.Tensor4D) => tf.Tensor4D, inShape: [number, number], channels: number, seed: number): void {
  tf.tidy(() => {
    const [h, w] = inShape;
    const x = randn([1, h, w, channels], seed) as tf.Tensor4D;
    const y = f(x);
    const dy = randn(y.shape, seed + 1);
    const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t as tf.Tensor4D), dy)) as tf.Scalar)(x);
    // Basis images for one channel (the op is per channel): [h*w, h, w, 1].
    const basis = tf.reshape(tf.eye(h * w), [h * w, h, w, 1]) as tf.Tensor4D;
    const responses = f(tf.tile(basis, [1, 1, 1, channels]) as tf.Tensor4D); // [h*w, oh, ow, C]
    const expected = tf.reshape(tf.sum(tf.mul(responses, dy), [1, 2]), [1, h, w, channels]);
    const err = maxAbs(dx, expected);
    assert.ok(err < 1e-4 * Math.max(1, tf.max(tf.abs(expected)).dataSync()[0]), `adjoint err ${err}`);
  });
}

before(async () => {
  await tf.setBackend('cpu');
});

describe('adaptive average pooling', () => {
  test('uses PyTorch bins: floor(i*L/n) to ceil((i+1)*L/n), overlapping when n does not divide L', () => {
    const m = adaptivePoolMatrix(5, 3); // bins [0,2) [1,4) [3,5)
    assert.deepEqual(Array.from(m.data).map((v) => +v.toFixed(4)), [
      0.5, 0.5, 0, 0, 0,
      0, 0.3333, 0.3333, 0.3333, 0,
      0, 0, 0, 0.5, 0.5,
    ]);
  });

  for (const [h, w] of [[13, 11], [9, 9], [5, 7]]) {
    for (const s of [1, 2, 3, 6]) {
      test(`${h}x${w} -> ${s}x${s} equals the loop reference`, () => {
        tf.tidy(() => {
          const x = randn([2, h, w, 3], h * 100 + s) as tf.Tensor4D;
          const y = adaptiveAvgPool2d(x, s);
          assert.deepEqual(y.shape, [2, s, s, 3]);
          assert.ok(maxAbs(y, refAdaptivePool(x, s, s)) < 1e-5);
        });
      });
    }
  }

  test('gradient is the exact adjoint (13x11 -> 6x6 and 3x3)', () => {
    checkAdjoint((t) => adaptiveAvgPool2d(t, 6), [13, 11], 2, 1);
    checkAdjoint((t) => adaptiveAvgPool2d(t, 3), [13, 11], 2, 3);
  });
});

describe('bilinear resize', () => {
  const sizes: [number, number, number, number][] = [
    [5, 7, 33, 33], // upsampling (decode-head logits to the input)
    [6, 6, 13, 11],
    [13, 11, 6, 5], // downsampling
    [3, 3, 3, 8],
    [1, 1, 5, 4], // a 1x1 pyramid bin back to the feature map
  ];
  for (const alignCorners of [true, false]) {
    for (const [h, w, oh, ow] of sizes) {
      test(`align_corners=${alignCorners}: ${h}x${w} -> ${oh}x${ow} matches PyTorch's formula`, () => {
        tf.tidy(() => {
          const x = randn([2, h, w, 3], h * 31 + oh) as tf.Tensor4D;
          const y = resizeBilinear(x, oh, ow, alignCorners);
          assert.deepEqual(y.shape, [2, oh, ow, 3]);
          assert.ok(maxAbs(y, refBilinear(x, oh, ow, alignCorners)) < 1e-5);
        });
      });
      test(`align_corners=${alignCorners}: ${h}x${w} -> ${oh}x${ow} gradient is the exact adjoint`, () => {
        checkAdjoint((t) => resizeBilinear(t, oh, ow, alignCorners), [h, w], 2, h + ow);
      });
    }
  }

  test('interpolation matrices have rows summing to 1', () => {
    for (const ac of [true, false]) {
      const m = bilinearMatrix(7, 19, ac);
      for (let i = 0; i < m.rows; i++) {
        let s = 0;
        for (let j = 0; j < m.cols; j++) s += m.data[i * m.cols + j];
        assert.ok(Math.abs(s - 1) < 1e-6);
      }
    }
  });

  test('tfjs\'s own ResizeBilinearGrad is wrong for half-pixel centres (why we replace it)', () => {
    tf.tidy(() => {
      // Square: on the cpu backend that kernel also mixes up height and width for non-square inputs.
      const x = randn([1, 6, 6, 1], 9) as tf.Tensor4D;
      const dy = randn([1, 33, 33, 1], 10);
      const native = tf.grad((t: tf.Tensor) =>
        tf.sum(tf.mul(tf.image.resizeBilinear(t as tf.Tensor4D, [33, 33], false, true), dy)) as tf.Scalar)(x);
      const ours = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(resizeBilinear(t as tf.Tensor4D, 33, 33, false), dy)) as tf.Scalar)(x);
      assert.ok(maxAbs(native, ours) > 1e-2, 'if this fails, tfjs fixed its gradient and the workaround can go');
    });
  });
});

describe('pooling in the ResNet stem and v1d shortcut', () => {
  test('MaxPool2d(3, 2, 1) has PyTorch\'s windows on even and odd sizes', () => {
    const pool = new MaxPool2d(3, 2, 1);
    for (const [h, w] of [[8, 8], [9, 7]]) {
      tf.tidy(() => {
        const x = randn([1, h, w, 2], h * w) as tf.Tensor4D;
        const y = pool.forward(x);
        const oh = Math.floor((h + 2 - 3) / 2) + 1;
        const ow = Math.floor((w + 2 - 3) / 2) + 1;
        assert.deepEqual(y.shape, [1, oh, ow, 2]);
        const v = x.dataSync();
        const got = y.dataSync();
        for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) for (let c = 0; c < 2; c++) {
          let m = -Infinity;
          for (let a = 2 * i - 1; a <= 2 * i + 1; a++) for (let b = 2 * j - 1; b <= 2 * j + 1; b++) {
            if (a >= 0 && a < h && b >= 0 && b < w) m = Math.max(m, at(v, x.shape, 0, a, b, c));
          }
          assert.equal(at(got, y.shape, 0, i, j, c), m);
        }
      });
    }
  });

  test('AvgPool2d(2) is ceil-mode and averages only covered pixels (count_include_pad=False)', () => {
    const pool = new AvgPool2d(2);
    tf.tidy(() => {
      const x = tf.reshape(tf.range(1, 1 + 3 * 5, 1, 'float32'), [1, 3, 5, 1]) as tf.Tensor4D; // rows 1..5, 6..10, 11..15
      const y = pool.forward(x);
      assert.deepEqual(y.shape, [1, 2, 3, 1]);
      assert.deepEqual(Array.from(y.dataSync()), [
        (1 + 2 + 6 + 7) / 4, (3 + 4 + 8 + 9) / 4, (5 + 10) / 2,
        (11 + 12) / 2, (13 + 14) / 2, 15,
      ]);
      checkAdjoint((t) => pool.forward(t), [5, 7], 2, 4);
    });
  });
});
