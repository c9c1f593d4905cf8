// The differentiable ops of src/backend other than batch norm, against plain tfjs ops on the cpu
// backend: conv2d (dilated, with its own gradient), softmaxCrossEntropy, separableLinear.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { loadBackend } from '../src/backend/load-backend';
import { conv2d, dilateFilter, type Conv2dGeometry } from '../src/backend/conv2d';
import { crossEntropyStock, softmaxCrossEntropy } from '../src/backend/softmax-cross-entropy';
import { separableLinear, separableMap, type Matrix } from '../src/backend/separable-linear';
import {
  registerSegdistKernels, registerWasmKernels, unregisterSegdistKernels, unregisterWasmKernels,
} from '../src/backend/register-wasm-kernels';
import { bilinearMatrix } from '../src/models/resize';
import { adaptivePoolMatrix } from '../src/models/adaptive-avg-pool';
import { Rng } from '../src/util/rng';
import { randomData, relativeError } from './helpers/compare';
import { onBackend } from './helpers/tensors';

const TOLERANCE = 1e-4;

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = TOLERANCE): void {
  const err = relativeError(actual, expected);
  assert.ok(err < tol, `${what}: relative error ${err.toExponential(2)} >= ${tol}`);
}

let wasm: BackendWasm;

before(async () => {
  assert.equal(await loadBackend('wasm'), 'wasm');
  wasm = tf.backend() as BackendWasm;
  registerSegdistKernels();
});

after(() => {
  registerWasmKernels();
  registerSegdistKernels();
});

// --- conv2d --------------------------------------------------------------------------------------

interface ConvCase {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  g: Conv2dGeometry;
}

const CONV_CASES: ConvCase[] = [
  { name: 'dilation 2, pad 2 (ResNet stage 3)', x: [2, 9, 8, 4], filter: [3, 3, 4, 5], g: { stride: 1, padding: 2, dilation: 2 } },
  { name: 'dilation 4, pad 4 (ResNet stage 4)', x: [2, 10, 11, 3], filter: [3, 3, 3, 4], g: { stride: 1, padding: 4, dilation: 4 } },
  { name: 'dilation 3, valid', x: [1, 12, 10, 2], filter: [3, 3, 2, 3], g: { stride: 1, padding: 'valid', dilation: 3 } },
  { name: 'dilation 2, same', x: [2, 7, 9, 3], filter: [3, 3, 3, 2], g: { stride: 1, padding: 'same', dilation: 2 } },
  { name: 'dilation 2 with stride 2', x: [2, 13, 11, 3], filter: [3, 3, 3, 4], g: { stride: 2, padding: 2, dilation: 2 } },
  { name: '5x5 dilation 2, pad 1', x: [1, 11, 12, 2], filter: [5, 5, 2, 3], g: { stride: 1, padding: 1, dilation: 2 } },
  { name: 'dilation 1 (plain tf.conv2d)', x: [2, 6, 7, 3], filter: [3, 3, 3, 4], g: { stride: 1, padding: 1, dilation: 1 } },
];

/** y and d(sum(y * r))/d(x, w) of our conv2d. */
function convGrads(c: ConvCase, xd: Float32Array, wd: Float32Array, rd: Float32Array, reference: boolean) {
  return tf.tidy(() => {
    const x = tf.tensor4d(xd, c.x);
    const w = tf.tensor4d(wd, c.filter);
    // The reference: the same convolution as an undilated one with a zero-dilated filter.
    const f = reference ?
        (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, dilateFilter(b as tf.Tensor4D, c.g.dilation),
                                                  c.g.stride, c.g.padding) :
        (a: tf.Tensor, b: tf.Tensor) => conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.g);
    const y = f(x, w);
    const r = tf.tensor(rd.subarray(0, y.size), y.shape);
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, b), r)))([x, w]);
    return { y: y.dataSync() as Float32Array, dx: dx.dataSync() as Float32Array, dw: dw.dataSync() as Float32Array };
  });
}

describe('conv2d with dilation: forward and gradients', () => {
  CONV_CASES.forEach((c, i) => {
    test(c.name, async () => {
      const xd = randomData(tf.util.sizeFromShape(c.x), 10 * i + 1);
      const wd = randomData(tf.util.sizeFromShape(c.filter), 10 * i + 2);
      const rd = randomData(tf.util.sizeFromShape(c.x) * 4, 10 * i + 3);
      const want = await onBackend('cpu', () => convGrads(c, xd, wd, rd, true));
      for (const backend of ['wasm', 'cpu']) {
        const got = await onBackend(backend, () => convGrads(c, xd, wd, rd, false));
        assertClose(got.y, want.y, `${backend} y`);
        assertClose(got.dx, want.dx, `${backend} dx`);
        assertClose(got.dw, want.dw, `${backend} dw`);
      }
    });
  });

  test('on wasm without our conv gradient kernels, the zero-dilated-filter path is taken', async () => {
    const c = CONV_CASES[1];
    const xd = randomData(tf.util.sizeFromShape(c.x), 71);
    const wd = randomData(tf.util.sizeFromShape(c.filter), 72);
    const rd = randomData(tf.util.sizeFromShape(c.x) * 4, 73);
    const want = await onBackend('cpu', () => convGrads(c, xd, wd, rd, true));
    await tf.setBackend('wasm');
    unregisterWasmKernels();
    let got: ReturnType<typeof convGrads>;
    try {
      // The stock wasm kernels have no Conv2DBackpropFilter: the fallback needs one, so this fails
      // cleanly rather than computing a wrong gradient.
      assert.throws(() => convGrads(c, xd, wd, rd, false), /Conv2DBackpropFilter/);
    } finally {
      registerWasmKernels();
    }
    got = convGrads(c, xd, wd, rd, false);
    assertClose(got.dw, want.dw, 'dw');
  });

  test('no tensors or wasm data ids leak', async () => {
    await tf.setBackend('wasm');
    const c = CONV_CASES[0];
    const args = [randomData(tf.util.sizeFromShape(c.x), 5), randomData(tf.util.sizeFromShape(c.filter), 6),
                  randomData(tf.util.sizeFromShape(c.x) * 4, 7)] as const;
    convGrads(c, ...args, false);
    const tensors = tf.memory().numTensors;
    const ids = wasm.numDataIds();
    for (let i = 0; i < 3; i++) convGrads(c, ...args, false);
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal(wasm.numDataIds(), ids);
  });
});

// --- softmaxCrossEntropy -------------------------------------------------------------------------

function ceRun(shape: [number, number, number, number], ld: Float32Array, labels: Int32Array, ignore: number,
               f: typeof softmaxCrossEntropy) {
  return tf.tidy(() => {
    const logits = tf.tensor4d(ld, shape);
    const y = tf.tensor3d(labels, shape.slice(0, 3) as [number, number, number], 'int32');
    const { value, grads } = tf.valueAndGrads((l: tf.Tensor) => tf.mul(f(l as tf.Tensor4D, y, ignore), 0.7) as tf.Scalar)([logits]);
    return { loss: value.dataSync()[0], grad: grads[0].dataSync() as Float32Array };
  });
}

describe('softmaxCrossEntropy against the composed loss on cpu', () => {
  const shape: [number, number, number, number] = [2, 5, 7, 5];
  const pixels = 2 * 5 * 7;
  const labelsWith = (seed: number, extra: (i: number, l: number) => number) => {
    const rng = new Rng(seed);
    return Int32Array.from({ length: pixels }, (_, i) => extra(i, Math.floor(rng.next() * 5)));
  };
  const cases: { name: string; labels: Int32Array; scale: number; ignore: number }[] = [
    { name: 'all pixels labelled', labels: labelsWith(1, (_, l) => l), scale: 3, ignore: 255 },
    { name: 'some pixels ignored (255)', labels: labelsWith(2, (i, l) => (i % 7 === 3 ? 255 : l)), scale: 3, ignore: 255 },
    { name: 'ignore index inside the class range', labels: labelsWith(3, (_, l) => l), scale: 3, ignore: 2 },
    { name: 'out-of-range labels count but add nothing', labels: labelsWith(4, (i, l) => (i % 5 === 0 ? 9 : l)), scale: 3, ignore: 255 },
    { name: 'large logits stay finite', labels: labelsWith(5, (_, l) => l), scale: 80, ignore: 255 },
  ];
  cases.forEach((c, i) => {
    test(c.name, async () => {
      const ld = randomData(tf.util.sizeFromShape(shape), 40 + i, -c.scale, c.scale);
      const want = await onBackend('cpu', () => ceRun(shape, ld, c.labels, c.ignore, crossEntropyStock));
      for (const backend of ['wasm', 'cpu']) {
        const got = await onBackend(backend, () => ceRun(shape, ld, c.labels, c.ignore, softmaxCrossEntropy));
        assert.ok(Math.abs(got.loss - want.loss) <= TOLERANCE * Math.abs(want.loss), `${backend} loss ${got.loss} vs ${want.loss}`);
        assertClose(got.grad, want.grad, `${backend} dlogits`);
      }
    });
  });

  test('a batch with every pixel ignored gives 0 and a zero gradient', async () => {
    for (const backend of ['wasm', 'cpu']) {
      const got = await onBackend(backend, () => ceRun(shape, randomData(tf.util.sizeFromShape(shape), 9),
                                                new Int32Array(pixels).fill(255), 255, softmaxCrossEntropy));
      assert.equal(got.loss, 0);
      assert.ok(got.grad.every((v) => v === 0));
    }
  });

  test('without the kernels it is the composed loss', async () => {
    const ld = randomData(tf.util.sizeFromShape(shape), 60);
    const want = await onBackend('cpu', () => ceRun(shape, ld, cases[1].labels, 255, crossEntropyStock));
    unregisterSegdistKernels();
    try {
      const got = await onBackend('wasm', () => ceRun(shape, ld, cases[1].labels, 255, softmaxCrossEntropy));
      assert.ok(Math.abs(got.loss - want.loss) <= TOLERANCE * want.loss);
      assertClose(got.grad, want.grad, 'dlogits');
    } finally {
      registerSegdistKernels();
    }
  });

  test('labels of the wrong shape or dtype are refused', async () => {
    await tf.setBackend('cpu');
    assert.throws(() => tf.tidy(() => void softmaxCrossEntropy(tf.zeros([1, 2, 2, 3]) as tf.Tensor4D,
                                                               tf.zeros([1, 2, 3], 'int32') as tf.Tensor3D, 255)),
                  /labels \[1,2,3\] do not match logits \[1,2,2,3\]/);
    assert.throws(() => tf.tidy(() => void softmaxCrossEntropy(tf.zeros([1, 2, 2, 3]) as tf.Tensor4D,
                                                               tf.zeros([1, 2, 2]) as tf.Tensor3D, 255)),
                  /labels must be int32/);
  });
});

// --- separableLinear -----------------------------------------------------------------------------

function denseMatrix(rows: number, cols: number, seed: number, sparsity = 0.5): Matrix {
  const rng = new Rng(seed);
  const data = Float32Array.from({ length: rows * cols }, () => (rng.next() < sparsity ? 0 : rng.uniform(-1, 1)));
  return { rows, cols, data };
}

/** y = A x B^T through plain ops (einsum-free: two matmuls on transposed views), differentiated by tfjs. */
function separableReference(x: tf.Tensor4D, a: Matrix, b: Matrix): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const am = tf.tensor2d(a.data, [a.rows, a.cols]);
  const bm = tf.tensor2d(b.data, [b.rows, b.cols]);
  const xr = tf.reshape(tf.transpose(x, [1, 0, 2, 3]), [h, n * w * c]);
  const t = tf.reshape(tf.matMul(am, xr), [a.rows, n, w, c]); // [oh, n, w, c]
  const tw = tf.reshape(tf.transpose(t, [2, 0, 1, 3]), [w, a.rows * n * c]);
  const y = tf.reshape(tf.matMul(bm, tw), [b.rows, a.rows, n, c]); // [ow, oh, n, c]
  return tf.transpose(y, [2, 1, 0, 3]) as tf.Tensor4D;
}

describe('separableLinear against matmuls on cpu', () => {
  const shape: [number, number, number, number] = [2, 6, 5, 3];
  const matrices: { name: string; a: Matrix; b: Matrix }[] = [
    { name: 'random sparse, upsampling', a: denseMatrix(9, 6, 1), b: denseMatrix(11, 5, 2) },
    { name: 'random sparse, downsampling', a: denseMatrix(2, 6, 3), b: denseMatrix(3, 5, 4, 0.2) },
    { name: 'bilinear, align corners', a: bilinearMatrix(6, 13, true), b: bilinearMatrix(5, 16, true) },
    { name: 'bilinear, half-pixel centres', a: bilinearMatrix(6, 13, false), b: bilinearMatrix(5, 16, false) },
    { name: 'adaptive pooling to 3x2', a: adaptivePoolMatrix(6, 3), b: adaptivePoolMatrix(5, 2) },
    { name: 'adaptive pooling to 1x1', a: adaptivePoolMatrix(6, 1), b: adaptivePoolMatrix(5, 1) },
  ];
  matrices.forEach(({ name, a, b }, i) => {
    test(name, async () => {
      const xd = randomData(tf.util.sizeFromShape(shape), 80 + i);
      const rd = randomData(shape[0] * a.rows * b.rows * shape[3], 90 + i);
      const run = (f: (x: tf.Tensor4D) => tf.Tensor4D) => tf.tidy(() => {
        const x = tf.tensor4d(xd, shape);
        const y = f(x);
        const r = tf.tensor(rd, y.shape);
        const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t as tf.Tensor4D), r)))(x);
        return { y: y.dataSync() as Float32Array, dx: dx.dataSync() as Float32Array };
      });
      const want = await onBackend('cpu', () => run((x) => separableReference(x, a, b)));
      for (const backend of ['wasm', 'cpu']) {
        const got = await onBackend(backend, () => run((x) => separableLinear(x, a, b)));
        assertClose(got.y, want.y, `${backend} y`);
        assertClose(got.dx, want.dx, `${backend} dx`);
      }
      unregisterSegdistKernels();
      try {
        const stock = await onBackend('wasm', () => run((x) => separableLinear(x, a, b)));
        assertClose(stock.y, want.y, 'stock-op fallback y');
        assertClose(stock.dx, want.dx, 'stock-op fallback dx');
      } finally {
        registerSegdistKernels();
      }
    });
  });

  test('matrices that do not fit the input are refused', async () => {
    await tf.setBackend('cpu');
    assert.throws(() => tf.tidy(() => void separableMap(tf.zeros([1, 4, 5, 2]) as tf.Tensor4D, denseMatrix(3, 5, 1),
                                                        denseMatrix(3, 5, 2))), /do not fit an input of 4x5/);
  });
});
