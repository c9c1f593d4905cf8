// Our replacements of stock wasm kernels that are not conv gradients (Identity, MaxPoolGrad, Slice,
// SplitV), and the SIMD column fill of Conv2DBackpropFilter against its JS fill.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { loadBackend } from '../src/backend/load-backend';
import { registerWasmKernels, unregisterWasmKernels } from '../src/backend/register-wasm-kernels';
import { disableSimdLoops, simdLoops } from '../src/backend/wasm-simd';
import { setColumnBufferLimit } from '../src/backend/wasm-tensor-memory';
import { Rng } from '../src/util/rng';

function randomData(size: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.uniform(-1, 1));
}

let wasm: BackendWasm;

before(async () => {
  assert.equal(await loadBackend('wasm'), 'wasm');
  wasm = tf.backend() as BackendWasm;
});

describe('the SIMD loops (wasm-simd.ts)', () => {
  // Every kernel that uses them falls back to JS loops when they are unavailable, so a module that
  // stopped validating would only show up as a slowdown: this test makes it a failure.
  test('compile and bind to the backend memory on this runtime', async () => {
    await tf.setBackend('wasm');
    assert.notEqual(simdLoops(wasm), null);
  });

  test('expInPlace matches Math.exp to float32 precision on [-87, 80]', async () => {
    await tf.setBackend('wasm');
    const xs = Float32Array.from({ length: 4 * 64 }, (_, i) => -87 + (167 * i) / 255);
    const t = tf.tensor1d(xs);
    simdLoops(wasm)!.expInPlace(wasm.dataIdMap.get(t.dataId)!.memoryOffset, xs.length);
    const got = t.dataSync();
    t.dispose();
    xs.forEach((x, i) => {
      const want = Math.exp(x);
      assert.ok(Math.abs(got[i] - want) <= 3e-7 * want, `exp(${x}) = ${got[i]}, want ${want}`);
    });
  });
});

describe('wasm Identity shares data instead of copying it', () => {
  test('a clone outlives its original with the same values, and frees nothing early', async () => {
    await tf.setBackend('wasm');
    const ids = wasm.numDataIds();
    const x = tf.tensor1d([1, 2, 3, 4]);
    const y = tf.clone(x);
    assert.equal(wasm.numDataIds(), ids + 1, 'the clone allocated new data');
    x.dispose();
    assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3, 4]);
    y.dispose();
    assert.equal(wasm.numDataIds(), ids, 'data not freed after the last reference');
  });

  test('a gradient that saves its inputs leaks nothing', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal([2, 4, 4, 3]);
    const w = tf.randomNormal([3, 3, 3, 2]);
    const run = () => tf.tidy(() => {
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.relu(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same'))))([x, w]);
    });
    run();
    const tensors = tf.memory().numTensors;
    const ids = wasm.numDataIds();
    for (let i = 0; i < 3; i++) run();
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal(wasm.numDataIds(), ids);
    tf.dispose([x, w]);
  });

  test('string tensors still clone', async () => {
    await tf.setBackend('wasm');
    const s = tf.tensor1d(['a', 'bc'], 'string');
    const c = tf.clone(s);
    s.dispose();
    assert.deepEqual(c.arraySync(), ['a', 'bc']);
    c.dispose();
  });
});

describe('wasm MaxPoolGrad against the cpu backend', () => {
  const cases: { name: string; shape: [number, number, number, number]; k: number; s: number;
                 pad: 'same' | 'valid' | number; ties: boolean }[] = [
    { name: 'ResNet stem pool 3x3/2 pad 1, after a ReLU (many ties)', shape: [2, 12, 10, 5], k: 3, s: 2, pad: 1, ties: true },
    { name: '3x3/2 pad 1, random values', shape: [2, 11, 13, 4], k: 3, s: 2, pad: 1, ties: false },
    { name: '2x2/2 valid', shape: [1, 8, 6, 3], k: 2, s: 2, pad: 'valid', ties: false },
    { name: '3x3/1 same, integer values (ties)', shape: [2, 7, 7, 2], k: 3, s: 1, pad: 'same', ties: true },
    { name: '3x3/2 same, odd size', shape: [1, 9, 7, 6], k: 3, s: 2, pad: 'same', ties: false },
  ];
  cases.forEach((c, i) => {
    test(c.name, async () => {
      let xd = randomData(tf.util.sizeFromShape(c.shape), 300 + i);
      if (c.ties) xd = xd.map((v) => Math.max(0, Math.round(v * 2)));
      const run = () => tf.tidy(() => {
        const x = tf.tensor4d(xd, c.shape);
        const y = tf.maxPool(x, c.k, c.s, c.pad);
        const r = tf.tensor(randomData(y.size, 400 + i), y.shape);
        return tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(t as tf.Tensor4D, c.k, c.s, c.pad), r)))(x)
            .dataSync() as Float32Array;
      });
      await tf.setBackend('cpu');
      const want = run();
      await tf.setBackend('wasm');
      const got = run();
      for (let j = 0; j < want.length; j++) {
        assert.ok(Math.abs(got[j] - want[j]) <= 1e-5 * (1 + Math.abs(want[j])), `dx[${j}] = ${got[j]}, cpu ${want[j]}`);
      }
    });
  });

  test('a dy of the wrong shape is refused', async () => {
    await tf.setBackend('wasm');
    assert.throws(() => tf.tidy(() => void tf.engine().runKernel(tf.MaxPoolGrad, {
      dy: tf.zeros([1, 3, 3, 2]), input: tf.zeros([1, 8, 8, 2]), output: tf.zeros([1, 4, 4, 2]),
    }, { filterSize: 3, strides: 2, pad: 1 })), /dy has shape \[1,3,3,2\] but the pooling produces \[1,4,4,2\]/);
  });
});

describe('Conv2DBackpropFilter: SIMD column fill equals the JS fill', () => {
  type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
  const cases: { name: string; x: [number, number, number, number]; f: [number, number, number, number];
                 s: number | [number, number]; pad: Pad; d?: number }[] = [
    { name: '3x3/1 same', x: [2, 9, 8, 5], f: [3, 3, 5, 4], s: 1, pad: 'same' },
    { name: '3x3/2 pad 1, odd size', x: [2, 11, 9, 3], f: [3, 3, 3, 4], s: 2, pad: 1 },
    { name: '7x7/2 pad 3 (stem)', x: [2, 17, 15, 3], f: [7, 7, 3, 8], s: 2, pad: 3 },
    { name: '3x3/1 dilation 4 pad 4', x: [2, 10, 12, 4], f: [3, 3, 4, 3], s: 1, pad: 4, d: 4 },
    { name: '3x3 dilation 2 stride 2 same', x: [2, 13, 11, 3], f: [3, 3, 3, 4], s: 2, pad: 'same', d: 2 },
    { name: '3x1 strides [1, 2]', x: [2, 8, 9, 3], f: [3, 1, 3, 5], s: [1, 2], pad: 'same' },
    { name: 'asymmetric explicit pad', x: [2, 8, 9, 3], f: [3, 3, 3, 4], s: 1, pad: [[0, 0], [2, 0], [0, 1], [0, 0]] },
    { name: 'pad wider than the filter', x: [1, 6, 7, 2], f: [3, 3, 2, 3], s: 1, pad: [[0, 0], [3, 1], [1, 4], [0, 0]] },
    { name: '3x3/2 pad 1, even size', x: [1, 10, 10, 2], f: [3, 3, 2, 2], s: 2, pad: 1 },
  ];
  cases.forEach((c, i) => {
    test(c.name, async () => {
      await tf.setBackend('wasm');
      assert.ok(simdLoops(wasm) !== null, 'this runtime has no wasm SIMD; the SIMD fill is not tested');
      const xd = randomData(tf.util.sizeFromShape(c.x), 500 + i);
      const info = tf.backend_util.computeConv2DInfo(c.x, c.f, c.s, c.d ?? 1, c.pad as 'same');
      const dyd = randomData(tf.util.sizeFromShape(info.outShape), 600 + i);
      const run = () => tf.tidy(() => (tf.engine().runKernel(tf.Conv2DBackpropFilter, {
        x: tf.tensor4d(xd, c.x), dy: tf.tensor4d(dyd, info.outShape),
      }, { strides: c.s, pad: c.pad, dataFormat: 'NHWC', filterShape: c.f, dilations: c.d ?? 1 } as unknown as tf.NamedAttrMap) as
          tf.Tensor).dataSync() as Float32Array);
      const simd = run();
      const previous = setColumnBufferLimit(256); // several chunks, split inside images
      let chunked: Float32Array;
      try {
        chunked = run();
      } finally {
        setColumnBufferLimit(previous);
      }
      disableSimdLoops(true);
      let js: Float32Array;
      try {
        js = run();
      } finally {
        disableSimdLoops(false);
      }
      assert.deepEqual(Array.from(simd), Array.from(js), 'SIMD and JS fills differ');
      for (let j = 0; j < js.length; j++) {
        assert.ok(Math.abs(chunked[j] - js[j]) <= 1e-5 * (1 + Math.abs(js[j])), `chunked dw[${j}]`);
      }
    });
  });

  test('repeated calls leak no wasm data ids', async () => {
    await tf.setBackend('wasm');
    const run = () => tf.tidy(() => void tf.engine().runKernel(tf.Conv2DBackpropFilter, {
      x: tf.ones([2, 9, 9, 4]), dy: tf.ones([2, 9, 9, 3]),
    }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 4, 3] }));
    run();
    const ids = wasm.numDataIds();
    for (let i = 0; i < 3; i++) run();
    assert.equal(wasm.numDataIds(), ids);
  });
});

describe('wasm Slice and SplitV against the cpu backend', () => {
  const sliceCases: { name: string; shape: number[]; begin: number[]; size: number[]; dtype: 'float32' | 'int32' | 'bool' }[] = [
    { name: 'channel slice of NHWC', shape: [2, 3, 4, 10], begin: [0, 0, 0, 3], size: [-1, -1, -1, 4], dtype: 'float32' },
    { name: 'box in every axis', shape: [3, 5, 4, 6], begin: [1, 2, 1, 2], size: [2, 2, 3, 3], dtype: 'float32' },
    { name: 'rank 1', shape: [17], begin: [5], size: [7], dtype: 'float32' },
    { name: 'rank 2 int32', shape: [6, 7], begin: [2, 1], size: [3, 5], dtype: 'int32' },
    { name: 'rank 5', shape: [2, 3, 2, 4, 5], begin: [1, 1, 0, 1, 2], size: [1, 2, 2, 3, 2], dtype: 'float32' },
    { name: 'empty slice', shape: [3, 4], begin: [1, 2], size: [0, 2], dtype: 'float32' },
    { name: 'bool (stock kernel)', shape: [4, 5], begin: [1, 1], size: [2, 3], dtype: 'bool' },
  ];
  for (const c of sliceCases) {
    test(`slice: ${c.name}`, async () => {
      const n = c.shape.reduce((a, b) => a * b, 1);
      const values = c.dtype === 'bool' ? Array.from({ length: n }, (_, i) => i % 3 === 0 ? 1 : 0) :
          Array.from({ length: n }, (_, i) => (c.dtype === 'int32' ? i - 7 : i * 0.5 - 3));
      const run = () => tf.tidy(() => Array.from(tf.slice(tf.tensor(values, c.shape, c.dtype), c.begin, c.size).dataSync()));
      await tf.setBackend('cpu');
      const want = run();
      await tf.setBackend('wasm');
      assert.deepEqual(run(), want);
    });
  }

  for (const axis of [0, 1, 3, -1]) {
    test(`splitV on axis ${axis}`, async () => {
      const shape = [4, 3, 5, 6];
      const values = Array.from({ length: 360 }, (_, i) => i);
      const sizes = axis === 0 ? [1, 3] : axis === 1 ? [1, 1, 1] : [2, 1, 3];
      const run = () => tf.tidy(() => tf.split(tf.tensor(values, shape), sizes, axis).map((t) => Array.from(t.dataSync())));
      await tf.setBackend('cpu');
      const want = run();
      await tf.setBackend('wasm');
      assert.deepEqual(run(), want);
    });
  }

  test('the gradient of a concat (SplitV) leaks nothing', async () => {
    await tf.setBackend('wasm');
    const parts = [tf.ones([2, 3, 3, 4]), tf.ones([2, 3, 3, 2])];
    const run = () => tf.tidy(() => void tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.concat([a, b], 3))))(parts));
    run();
    const ids = wasm.numDataIds();
    for (let i = 0; i < 3; i++) run();
    assert.equal(wasm.numDataIds(), ids);
    tf.dispose(parts);
  });
});

describe('registration', () => {
  test('unregisterWasmKernels puts the stock Identity and MaxPoolGrad back, registerWasmKernels ours', async () => {
    const ours = [tf.getKernel(tf.Identity, 'wasm'), tf.getKernel(tf.MaxPoolGrad, 'wasm')];
    unregisterWasmKernels();
    try {
      const stock = [tf.getKernel(tf.Identity, 'wasm'), tf.getKernel(tf.MaxPoolGrad, 'wasm')];
      stock.forEach((k, i) => {
        assert.notEqual(k, undefined);
        assert.notEqual(k, ours[i]);
      });
    } finally {
      assert.equal(registerWasmKernels(), true);
    }
    assert.equal(registerWasmKernels(), false);
  });
});
