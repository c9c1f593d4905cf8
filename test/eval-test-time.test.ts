// Test-time prediction (src/eval/test-time.ts): the sliding-window grid, slide against whole, flip,
// multi-scale, the test options, and the exact cross-rank encoding of confusion counts. Tiny shapes on
// the cpu backend.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../src/config/config-error';
import { resolveConfig } from '../src/config/load-config';
import { countsToDigits, digitsToCounts } from '../src/eval/confusion-matrix';
import { predictClasses, predictScores, slideLogits, slideWindows, testOptions, type TestOptions } from '../src/eval/test-time';
import { buildModel, type ModelConfig } from '../src/models/build-model';
import type { Segmentor } from '../src/train/train-step';
import { Rng } from '../src/util/rng';

before(async () => {
  await tf.setBackend('cpu');
});

const MODEL: ModelConfig = {
  norm: 'bn',
  align_corners: true,
  backbone: { type: 'resnet', depth: 18, stem: 'v1b', output_stride: 8, base_channels: 4, contract_dilation: true },
  head: { type: 'psp', channels: 8, dropout: 0.1, pool_scales: [1, 2] },
  aux: { enabled: true, channels: 4, weight: 0.4, dropout: 0.1 },
};

function options(over: Partial<TestOptions> = {}): TestOptions {
  return { mode: 'whole', cropSize: [16, 16], stride: [11, 11], scales: [1], flip: false, alignCorners: true, batchSize: 4, ...over };
}

function noise(shape: [number, number, number, number], seed: number): tf.Tensor4D {
  const rng = new Rng(seed);
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) v[i] = rng.uniform(-2, 2);
  return tf.tensor4d(v, shape);
}

/** A per-pixel "model" (fixed 1x1 conv to 3 classes): any window of it equals the same part of the whole. */
const pointwise: Segmentor = {
  forward(x) {
    return tf.tidy(() => {
      const w = tf.tensor4d([1, -0.5, 0.2, 0.3, 1.1, -0.7, -0.4, 0.6, 0.9], [1, 1, 3, 3]);
      return { out: tf.conv2d(x, w, 1, 'same') as tf.Tensor4D };
    });
  },
};

const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

describe('slideWindows', () => {
  test('covers every pixel, ends at the border, mmseg grid', () => {
    for (const [h, w, c, s] of [[40, 33, [16, 16], [11, 11]], [16, 16, [16, 16], [8, 8]], [10, 50, [16, 20], [16, 7]], [97, 61, [32, 32], [21, 21]]] as const) {
      const wins = slideWindows(h, w, [c[0], c[1]], [s[0], s[1]]);
      const count = new Uint8Array(h * w);
      for (const win of wins) {
        assert.ok(win.top >= 0 && win.left >= 0 && win.top + win.height <= h && win.left + win.width <= w);
        assert.equal(win.height, Math.min(c[0], h));
        assert.equal(win.width, Math.min(c[1], w));
        for (let y = win.top; y < win.top + win.height; y++) for (let x = win.left; x < win.left + win.width; x++) count[y * w + x]++;
      }
      assert.ok(count.every((n) => n > 0), `${h}x${w}: a pixel outside every window`);
      // mmseg: h_grids = max(h - crop + stride - 1, 0) // stride + 1
      const grids = (n: number, cc: number, ss: number) => Math.floor(Math.max(n - cc + ss - 1, 0) / ss) + 1;
      assert.equal(wins.length, grids(h, c[0], s[0]) * grids(w, c[1], s[1]));
      assert.equal(Math.max(...wins.map((x) => x.top + x.height)), h);
      assert.equal(Math.max(...wins.map((x) => x.left + x.width)), w);
    }
    assert.deepEqual(slideWindows(12, 9, [16, 16], [11, 11]), [{ top: 0, left: 0, height: 12, width: 9 }]);
  });
});

describe('slide', () => {
  test('with a per-pixel model equals whole for any window and stride', () => {
    const x = noise([2, 37, 29, 3], 1);
    const whole = pointwise.forward(x, { training: false, seed: 0 }).out;
    for (const [crop, stride, batch] of [[[16, 16], [11, 11], 4], [[8, 29], [3, 5], 1], [[37, 10], [20, 10], 3], [[64, 64], [10, 10], 4]] as const) {
      const slid = slideLogits(pointwise, x, { cropSize: [crop[0], crop[1]], stride: [stride[0], stride[1]], batchSize: batch });
      assert.deepEqual(slid.shape, whole.shape);
      assert.ok(maxAbsDiff(slid, whole) < 1e-5, `crop ${crop} stride ${stride}`);
      slid.dispose();
    }
    tf.dispose([x, whole]);
  });

  test('on an image equal to the crop size equals whole mode exactly', () => {
    const model = buildModel(MODEL, 3, 5);
    const x = noise([1, 24, 32, 3], 2);
    const whole = predictScores(model, x, 24, 32, options({ mode: 'whole' }));
    const slide = predictScores(model, x, 24, 32, options({ mode: 'slide', cropSize: [24, 32], stride: [16, 21] }));
    const bigger = predictScores(model, x, 24, 32, options({ mode: 'slide', cropSize: [40, 40], stride: [27, 27] }));
    assert.equal(maxAbsDiff(whole, slide), 0);
    assert.equal(maxAbsDiff(whole, bigger), 0);
    tf.dispose([x, whole, slide, bigger]);
    model.dispose();
  });

  test('leaks no tensors', () => {
    const model = buildModel(MODEL, 3, 5);
    const x = noise([1, 30, 30, 3], 3);
    const before = tf.memory().numTensors;
    for (const o of [options({ mode: 'slide' }), options({ mode: 'multiscale', scales: [0.5, 1.25], flip: true }), options({ flip: true })]) {
      predictScores(model, x, 20, 25, o).dispose();
    }
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
    model.dispose();
  });
});

describe('flip and multi-scale', () => {
  test('flip + scale 1.0 on a mirror-symmetric input gives mirror-symmetric scores', () => {
    const model = buildModel(MODEL, 3, 7);
    const half = noise([1, 24, 16, 3], 4);
    const x = tf.concat([half, tf.reverse(half, 2)], 2) as tf.Tensor4D; // 24 x 32, symmetric left-right
    const plain = predictScores(model, x, 24, 32, options());
    const flipped = predictScores(model, x, 24, 32, options({ mode: 'multiscale', scales: [1.0], flip: true, cropSize: [64, 64] }));
    // The network itself is not mirror-equivariant (else the check below would be empty) ...
    assert.ok(maxAbsDiff(plain, tf.reverse(plain, 2)) > 1e-3);
    // ... but the average of a prediction and the mirrored prediction of the mirrored image is.
    assert.ok(maxAbsDiff(flipped, tf.reverse(flipped, 2)) < 1e-6);
    // Probabilities: the mean of softmax(plain) and its mirror image.
    const expected = tf.tidy(() => tf.div(tf.add(tf.softmax(plain), tf.reverse(tf.softmax(plain), 2)), 2));
    assert.ok(maxAbsDiff(flipped, expected) < 1e-6);
    // whole + flip is the same computation (the image fits in one window).
    const wholeFlip = predictScores(model, x, 24, 32, options({ flip: true }));
    assert.equal(maxAbsDiff(wholeFlip, flipped), 0);
    tf.dispose([half, x, plain, flipped, expected, wholeFlip]);
    model.dispose();
  });

  test('multiscale [1.0] without flip (image within the window) predicts what whole does; scores come back at the asked size', async () => {
    const model = buildModel(MODEL, 3, 9);
    const x = noise([2, 20, 28, 3], 5);
    const a = await predictClasses(model, x, 20, 28, options());
    const b = await predictClasses(model, x, 20, 28, options({ mode: 'multiscale', scales: [1.0], cropSize: [64, 64] }));
    assert.deepEqual(b, a);
    // Where the image exceeds the window, each scale is predicted by sliding windows (semseg's scale_process).
    const msSlide = predictScores(model, x, 20, 28, options({ mode: 'multiscale', scales: [1.0] }));
    const slide = predictScores(model, x, 20, 28, options({ mode: 'slide' }));
    assert.equal(maxAbsDiff(msSlide, slide), 0);
    tf.dispose([msSlide, slide]);
    const ms = predictScores(model, x, 31, 17, options({ mode: 'multiscale', scales: [0.5, 0.75, 1.75], flip: true }));
    assert.deepEqual(ms.shape, [2, 31, 17, 3]);
    // A mean of probabilities: sums to 1 at every pixel.
    assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(tf.sum(ms, -1), 1))).dataSync()[0]) < 1e-5);
    ms.dispose();
    // Each scale of a multi-scale run is the single-scale prediction of the resized image, resized back.
    const single = predictScores(model, x, 20, 28, options({ mode: 'multiscale', scales: [0.75], cropSize: [64, 64] }));
    const manual = tf.tidy(() => {
      const xs = tf.image.resizeBilinear(x, [15, 21], false, true);
      return tf.softmax(tf.image.resizeBilinear(model.forward(xs, { training: false, seed: 0 }).out, [20, 28], true, false));
    });
    // One pass: logits (argmax-equivalent to the probabilities).
    assert.ok(maxAbsDiff(tf.softmax(single), manual) < 1e-6);
    tf.dispose([x, single, manual]);
    model.dispose();
  });
});

describe('test options', () => {
  test('defaults, stride from the window, errors name the key', () => {
    const cfg = resolveConfig({ overrides: ['data.train.crop_size=[96,128]'] });
    const o = testOptions(cfg);
    assert.equal(o.mode, 'whole');
    assert.deepEqual(o.scales, [1]);
    assert.deepEqual(o.cropSize, [96, 128]);
    assert.deepEqual(o.stride, [64, 86]); // ceil(2/3 crop), semseg
    const ms = testOptions(resolveConfig({ overrides: ['test.mode=multiscale', 'test.flip=true', 'test.crop_size=[33,33]'] }));
    assert.deepEqual(ms.scales, [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]);
    assert.deepEqual(ms.stride, [22, 22]);
    assert.equal(ms.flip, true);
    assert.throws(() => testOptions(resolveConfig({ overrides: ['test.mode=slide', 'test.crop_size=[32,32]', 'test.stride=[40,8]'] })), (e: Error) => e instanceof ConfigError && /^test\.stride: \[40,8\] is larger than the window \[32,32\]/.test(e.message));
    assert.throws(() => resolveConfig({ overrides: ['test.mode=sliding'] }), /test\.mode: 'sliding' is not one of whole, slide, multiscale/);
    assert.throws(() => resolveConfig({ overrides: ['test.scales=[]'] }), /test\.scales/);
  });
});

describe('confusion counts across ranks', () => {
  test('float32 digits sum exactly and decode to float64 counts', () => {
    const big = [0, 1, 4095, 4096, 2 ** 24 + 1, 123456789012, Number.MAX_SAFE_INTEGER];
    assert.deepEqual([...digitsToCounts(countsToDigits(big))], big);
    // 1000 ranks, each with counts just above float32's exact range: the digit sums stay exact.
    const ranks = 1000;
    const per = [2 ** 24 + 3, 17_000_001, 5];
    const sum = new Float32Array(per.length * 5);
    for (let r = 0; r < ranks; r++) {
      const d = countsToDigits(per);
      for (let i = 0; i < d.length; i++) sum[i] += d[i];
    }
    assert.deepEqual([...digitsToCounts(sum)], per.map((v) => v * ranks));
    assert.throws(() => countsToDigits([1.5]), /not an integer/);
  });
});
