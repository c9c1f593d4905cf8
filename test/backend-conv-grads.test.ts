// The wasm conv gradient kernels against the cpu backend's stock kernels.
// Shapes stay tiny: the cpu backend's filter gradient runs at ~0.01 GFLOP/s.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { loadBackend } from '../src/backend/load-backend';
import { registerWasmKernels, unregisterWasmKernels } from '../src/backend/register-wasm-kernels';
import { setColumnBufferLimit } from '../src/backend/wasm-tensor-memory';
import { Rng } from '../src/util/rng';
import { relativeError } from './helpers/compare';

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
type Shape4 = [number, number, number, number];

interface ConvCase {
  name: string;
  x: Shape4;       // NHWC
  filter: Shape4;  // HWIO
  strides: number | [number, number];
  pad: Pad;
  dilations?: number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

const TOLERANCE = 1e-4;

function randomData(size: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.uniform(-1, 1));
}

function assertClose(actual: Float32Array, expected: Float32Array, what: string): void {
  const err = relativeError(actual, expected);
  assert.ok(err < TOLERANCE, `${what}: relative error ${err.toExponential(2)} >= ${TOLERANCE}`);
}

async function on<T>(backend: string, fn: () => T): Promise<T> {
  assert.ok(await tf.setBackend(backend), `could not switch to ${backend}`);
  return fn();
}

/** dy's shape for a case, from the same geometry the kernels use. */
function outShape(c: ConvCase): Shape4 {
  const info = tf.backend_util.computeConv2DInfo(
      c.x, c.filter, c.strides, c.dilations ?? 1, c.pad, c.dimRoundingMode);
  return info.outShape as Shape4;
}

/** Gradients of sum(conv2d(x, w) * r) w.r.t. x and w through tf.grads, as training takes them. */
function conv2dGrads(c: ConvCase, xData: Float32Array, wData: Float32Array, rData: Float32Array) {
  return tf.tidy(() => {
    const x = tf.tensor4d(xData, c.x);
    const w = tf.tensor4d(wData, c.filter);
    const r = tf.tensor4d(rData, outShape(c));
    const f = (a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad), r));
    const [dx, dw] = tf.grads(f)([x, w]);
    assert.deepEqual(dx.shape, c.x);
    assert.deepEqual(dw.shape, c.filter);
    return { dx: dx.dataSync() as Float32Array, dw: dw.dataSync() as Float32Array };
  });
}

/** The filter with (d-1) zeros between taps: same convolution without dilation. */
function dilateFilter(w: Float32Array, shape: Shape4, d: number): { data: Float32Array; shape: Shape4 } {
  const [kh, kw, ci, co] = shape;
  const eh = (kh - 1) * d + 1;
  const ew = (kw - 1) * d + 1;
  const out = new Float32Array(eh * ew * ci * co);
  const block = ci * co;
  for (let ky = 0; ky < kh; ky++) {
    for (let kx = 0; kx < kw; kx++) {
      out.set(w.subarray((ky * kw + kx) * block, (ky * kw + kx + 1) * block),
              (ky * d * ew + kx * d) * block);
    }
  }
  return { data: out, shape: [eh, ew, ci, co] };
}

/** Every d-th tap of a gradient taken w.r.t. the dilated filter. */
function undilateFilter(g: Float32Array, shape: Shape4, d: number): Float32Array {
  const [kh, kw, ci, co] = shape;
  const ew = (kw - 1) * d + 1;
  const block = ci * co;
  const out = new Float32Array(kh * kw * block);
  for (let ky = 0; ky < kh; ky++) {
    for (let kx = 0; kx < kw; kx++) {
      out.set(g.subarray((ky * d * ew + kx * d) * block, (ky * d * ew + kx * d + 1) * block),
              (ky * kw + kx) * block);
    }
  }
  return out;
}

function backpropInput(c: ConvCase, dyData: Float32Array, filter: { data: Float32Array; shape: Shape4 },
                       dilations?: number): Float32Array {
  return tf.tidy(() => {
    const dy = tf.tensor4d(dyData, outShape(c));
    const w = tf.tensor4d(filter.data, filter.shape);
    const attrs: Record<string, unknown> = {
      strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: c.x,
      dimRoundingMode: c.dimRoundingMode,
    };
    if (dilations !== undefined) attrs.dilations = dilations;
    const dx = tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter: w }, attrs as tf.NamedAttrMap) as tf.Tensor;
    assert.deepEqual(dx.shape, c.x);
    return dx.dataSync() as Float32Array;
  });
}

function backpropFilter(c: ConvCase, xData: Float32Array, dyData: Float32Array, filterShape: Shape4,
                        dilations?: number): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor4d(xData, c.x);
    const dy = tf.tensor4d(dyData, outShape(c));
    const attrs: Record<string, unknown> = {
      strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape,
      dimRoundingMode: c.dimRoundingMode,
    };
    if (dilations !== undefined) attrs.dilations = dilations;
    const dw = tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, attrs as tf.NamedAttrMap) as tf.Tensor;
    assert.deepEqual(dw.shape, filterShape);
    return dw.dataSync() as Float32Array;
  });
}

// Through tf.conv2d + tf.grads (tfjs's conv2d gradient has no dilations).
const GRAD_CASES: ConvCase[] = [
  { name: '1x1 stride 1 valid', x: [2, 7, 9, 4], filter: [1, 1, 4, 6], strides: 1, pad: 'valid' },
  { name: '1x1 stride 2 valid, odd size', x: [2, 9, 7, 5], filter: [1, 1, 5, 3], strides: 2, pad: 'valid' },
  { name: '1x1 stride 2 same', x: [1, 8, 6, 3], filter: [1, 1, 3, 4], strides: 2, pad: 'same' },
  { name: '3x3 stride 1 same', x: [3, 11, 13, 5], filter: [3, 3, 5, 8], strides: 1, pad: 'same' },
  { name: '3x3 stride 1 valid', x: [2, 9, 8, 4], filter: [3, 3, 4, 6], strides: 1, pad: 'valid' },
  { name: '3x3 stride 2 same, odd size', x: [2, 13, 11, 4], filter: [3, 3, 4, 6], strides: 2, pad: 'same' },
  { name: '3x3 stride 2 same, even size', x: [2, 12, 10, 3], filter: [3, 3, 3, 5], strides: 2, pad: 'same' },
  { name: '3x3 stride 2 valid', x: [2, 11, 10, 3], filter: [3, 3, 3, 4], strides: 2, pad: 'valid' },
  { name: '3x3 stride 2 numeric pad 1', x: [2, 9, 11, 3], filter: [3, 3, 3, 5], strides: 2, pad: 1 },
  { name: '3x3 stride 1 numeric pad 2', x: [1, 7, 8, 3], filter: [3, 3, 3, 4], strides: 1, pad: 2 },
  {
    name: '3x3 stride 1 explicit asymmetric pad', x: [2, 8, 9, 3], filter: [3, 3, 3, 4], strides: 1,
    pad: [[0, 0], [2, 0], [0, 1], [0, 0]],
  },
  {
    name: '3x3 stride 2 explicit pad', x: [2, 9, 10, 4], filter: [3, 3, 4, 3], strides: 2,
    pad: [[0, 0], [1, 2], [2, 0], [0, 0]],
  },
  {
    name: '3x3 stride 1 pad wider than the filter', x: [1, 6, 7, 2], filter: [3, 3, 2, 3], strides: 1,
    pad: [[0, 0], [3, 1], [1, 4], [0, 0]],
  },
  { name: '7x7 stride 2 pad 3 (stem)', x: [2, 17, 15, 3], filter: [7, 7, 3, 8], strides: 2, pad: 3 },
  { name: '7x7 stride 1 same', x: [1, 9, 10, 3], filter: [7, 7, 3, 4], strides: 1, pad: 'same' },
  { name: '3x3 stride 2 from one input channel', x: [2, 9, 9, 1], filter: [3, 3, 1, 4], strides: 2, pad: 'same' },
  { name: '1x1 stride 1 to one output channel, batch 1', x: [1, 5, 6, 4], filter: [1, 1, 4, 1], strides: 1, pad: 'valid' },
  { name: '3x3 stride 1 one channel in and out', x: [2, 6, 5, 1], filter: [3, 3, 1, 1], strides: 1, pad: 'same' },
  { name: '3x1 kernel, strides [1, 2]', x: [2, 8, 9, 3], filter: [3, 1, 3, 5], strides: [1, 2], pad: 'same' },
];

// Straight to the kernels, where dilations can be passed.
const DILATED_CASES: ConvCase[] = [
  { name: '3x3 dilation 2 stride 1 same', x: [2, 11, 9, 3], filter: [3, 3, 3, 5], strides: 1, pad: 'same', dilations: 2 },
  { name: '3x3 dilation 2 stride 1 valid', x: [1, 10, 12, 4], filter: [3, 3, 4, 3], strides: 1, pad: 'valid', dilations: 2 },
  { name: '3x3 dilation 2 stride 1 numeric pad 2', x: [2, 8, 7, 3], filter: [3, 3, 3, 4], strides: 1, pad: 2, dilations: 2 },
  {
    name: '3x3 dilation 2 explicit pad', x: [1, 9, 9, 2], filter: [3, 3, 2, 3], strides: 1,
    pad: [[0, 0], [1, 3], [4, 0], [0, 0]], dilations: 2,
  },
  { name: '3x3 dilation 2 stride 2 same', x: [2, 13, 11, 3], filter: [3, 3, 3, 4], strides: 2, pad: 'same', dilations: 2 },
];

let wasm: BackendWasm;

before(async () => {
  assert.equal(await loadBackend('wasm'), 'wasm');
  wasm = tf.backend() as BackendWasm;
});

describe('conv2d gradients through tf.grads, wasm vs cpu', () => {
  GRAD_CASES.forEach((c, i) => {
    test(c.name, async () => {
      const xData = randomData(tf.util.sizeFromShape(c.x), 10 * i + 1);
      const wData = randomData(tf.util.sizeFromShape(c.filter), 10 * i + 2);
      const rData = randomData(tf.util.sizeFromShape(outShape(c)), 10 * i + 3);
      const got = await on('wasm', () => conv2dGrads(c, xData, wData, rData));
      const want = await on('cpu', () => conv2dGrads(c, xData, wData, rData));
      assertClose(got.dx, want.dx, 'dx');
      assertClose(got.dw, want.dw, 'dw');
    });
  });
});

describe('dilated Conv2DBackpropInput / Conv2DBackpropFilter, wasm vs cpu with a zero-dilated filter', () => {
  DILATED_CASES.forEach((c, i) => {
    test(c.name, async () => {
      const d = c.dilations!;
      const xData = randomData(tf.util.sizeFromShape(c.x), 100 + 10 * i);
      const wData = randomData(tf.util.sizeFromShape(c.filter), 101 + 10 * i);
      const dyData = randomData(tf.util.sizeFromShape(outShape(c)), 102 + 10 * i);
      const dilated = dilateFilter(wData, c.filter, d);

      const dx = await on('wasm', () => backpropInput(c, dyData, { data: wData, shape: c.filter }, d));
      const dxRef = await on('cpu', () => backpropInput(c, dyData, dilated));
      assertClose(dx, dxRef, 'dx');

      const dw = await on('wasm', () => backpropFilter(c, xData, dyData, c.filter, d));
      const dwDilatedRef = await on('cpu', () => backpropFilter(c, xData, dyData, dilated.shape));
      assertClose(dw, undilateFilter(dwDilatedRef, c.filter, d), 'dw');

      if (c.strides === 1) {
        // The forward dilated conv agrees on the geometry dy was given (tfjs
        // refuses stride and dilation both above 1 in the forward op).
        const y = await on('wasm', () => tf.tidy(() => tf.conv2d(
            tf.tensor4d(xData, c.x), tf.tensor4d(wData, c.filter), c.strides, c.pad, 'NHWC', d).shape));
        assert.deepEqual(y, outShape(c));
      }
    });
  });
});

describe('column buffer splitting', () => {
  test('results do not change when the column buffer is split into many chunks', async () => {
    const cases = [GRAD_CASES[3], GRAD_CASES[5], GRAD_CASES[13]];
    for (const [i, c] of cases.entries()) {
      const xData = randomData(tf.util.sizeFromShape(c.x), 500 + i);
      const wData = randomData(tf.util.sizeFromShape(c.filter), 600 + i);
      const rData = randomData(tf.util.sizeFromShape(outShape(c)), 700 + i);
      const whole = await on('wasm', () => conv2dGrads(c, xData, wData, rData));
      // Small enough that every chunk is one or two output rows.
      const previous = setColumnBufferLimit(4096);
      let split;
      try {
        split = await on('wasm', () => conv2dGrads(c, xData, wData, rData));
      } finally {
        setColumnBufferLimit(previous);
      }
      assertClose(split.dw, whole.dw, `${c.name} dw`);
      assertClose(split.dx, whole.dx, `${c.name} dx`);
    }
  });
});

describe('stock semantics', () => {
  for (const mode of ['ceil', 'floor', 'round'] as const) {
    test(`numeric pad with dimRoundingMode ${mode}, straight to the kernels`, async () => {
      const c: ConvCase = {
        name: mode, x: [2, 10, 9, 3], filter: [3, 3, 3, 4], strides: 2, pad: 1, dimRoundingMode: mode,
      };
      const xData = randomData(tf.util.sizeFromShape(c.x), 800);
      const wData = randomData(tf.util.sizeFromShape(c.filter), 801);
      const dyData = randomData(tf.util.sizeFromShape(outShape(c)), 802);
      const w = { data: wData, shape: c.filter };
      assertClose(await on('wasm', () => backpropInput(c, dyData, w)),
                  await on('cpu', () => backpropInput(c, dyData, w)), 'dx');
      assertClose(await on('wasm', () => backpropFilter(c, xData, dyData, c.filter)),
                  await on('cpu', () => backpropFilter(c, xData, dyData, c.filter)), 'dw');
    });
  }

  test('NCHW Conv2DBackpropInput still works (delegated to the stock kernel)', async () => {
    const xShape: Shape4 = [2, 3, 7, 6];
    const filterShape: Shape4 = [3, 3, 3, 4];
    const dyShape: Shape4 = [2, 4, 4, 3];
    const dyData = randomData(tf.util.sizeFromShape(dyShape), 900);
    const wData = randomData(tf.util.sizeFromShape(filterShape), 901);
    const run = () => tf.tidy(() => (tf.engine().runKernel(tf.Conv2DBackpropInput, {
      dy: tf.tensor4d(dyData, dyShape), filter: tf.tensor4d(wData, filterShape),
    }, { strides: 2, pad: 'same', dataFormat: 'NCHW', inputShape: xShape }) as tf.Tensor).dataSync() as Float32Array);
    assertClose(await on('wasm', run), await on('cpu', run), 'dx');
  });

  test('NCHW Conv2DBackpropFilter is refused with a clear error', async () => {
    await tf.setBackend('wasm');
    assert.throws(() => tf.tidy(() => tf.engine().runKernel(tf.Conv2DBackpropFilter, {
      x: tf.zeros([1, 3, 5, 5]), dy: tf.zeros([1, 4, 5, 5]),
    }, { strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 3, 4] })), /dataFormat 'NCHW' is not supported; only NHWC/);
  });

  test('stride-1 input gradient matches the stock wasm kernel', async () => {
    const c = GRAD_CASES[3];
    const dyData = randomData(tf.util.sizeFromShape(outShape(c)), 950);
    const wData = randomData(tf.util.sizeFromShape(c.filter), 951);
    await tf.setBackend('wasm');
    const ours = backpropInput(c, dyData, { data: wData, shape: c.filter });
    unregisterWasmKernels();
    let stock: Float32Array;
    try {
      stock = backpropInput(c, dyData, { data: wData, shape: c.filter });
    } finally {
      registerWasmKernels();
    }
    assert.ok(relativeError(ours, stock) < 1e-6, 'differs from the stock kernel');
  });
});

describe('memory', () => {
  test('repeated gradient calls leak no tensors and no wasm data ids', async () => {
    await tf.setBackend('wasm');
    const cases = [GRAD_CASES[0], GRAD_CASES[3], GRAD_CASES[5], GRAD_CASES[13]];
    const inputs = cases.map((c, i) => ({
      c,
      x: randomData(tf.util.sizeFromShape(c.x), 1000 + i),
      w: randomData(tf.util.sizeFromShape(c.filter), 1100 + i),
      r: randomData(tf.util.sizeFromShape(outShape(c)), 1200 + i),
    }));
    const step = () => {
      for (const { c, x, w, r } of inputs) conv2dGrads(c, x, w, r);
    };
    const splitStep = () => {
      const previous = setColumnBufferLimit(4096);
      try { step(); } finally { setColumnBufferLimit(previous); }
    };
    step();
    splitStep();
    const tensors = tf.memory().numTensors;
    const dataIds = wasm.numDataIds();
    for (let i = 0; i < 3; i++) {
      step();
      splitStep();
      assert.equal(tf.memory().numTensors, tensors, `numTensors grew on repeat ${i}`);
      assert.equal(wasm.numDataIds(), dataIds, `wasm data ids grew on repeat ${i}`);
    }
  });

  test('a dy of the wrong shape is refused without leaking', async () => {
    await tf.setBackend('wasm');
    const dataIds = wasm.numDataIds();
    // dy does not match the convolution's output shape.
    assert.throws(() => tf.tidy(() => tf.engine().runKernel(tf.Conv2DBackpropFilter, {
      x: tf.zeros([1, 6, 6, 2]), dy: tf.zeros([1, 5, 6, 3]),
    }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 2, 3] })), /dy has shape \[1,5,6,3\]/);
    assert.equal(wasm.numDataIds(), dataIds);
  });
});
