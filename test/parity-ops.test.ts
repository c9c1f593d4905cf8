// Numeric parity of segdist's model ops with PyTorch: dilated convolution, grouped convolution (on cpu
// and wasm), adaptive average pooling
// and bilinear resizing (both align_corners), forward and gradient, on the cpu backend. The reference
// values are goldens made by tools/make_parity_goldens.py (PyTorch, float64) and committed in
// test/fixtures/parity; this test needs no PyTorch. Error measure: relErr in
// test/fixtures/parity/goldens.ts, max|ours - torch| / max(max|torch|, 1e-6), must stay under 1e-4.

import { before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { conv2dTorch, groupedConv2dTorch } from '../src/models/conv2d';
import { loadBackend } from '../src/backend/load-backend';
import { adaptiveAvgPool2d } from '../src/models/adaptive-avg-pool';
import { resizeBilinear } from '../src/models/resize';
import {
  TOLERANCE, hwioToOihw, nchwToNhwc, nhwcToNchw, noise, oihwToHwio, readGoldens, relErr,
} from './fixtures/parity/goldens';

type Shape4 = [number, number, number, number];

/** A noise() tensor given in PyTorch's NCHW shape, as an NHWC tfjs tensor. */
function noiseNhwc(shapeNchw: readonly number[], seed: number, scale = 1): tf.Tensor4D {
  const t = nchwToNhwc(noise(shapeNchw, seed), shapeNchw);
  if (scale !== 1) for (let i = 0; i < t.data.length; i++) t.data[i] *= scale;
  return tf.tensor4d(t.data, t.shape as Shape4);
}

/** Our NHWC tensor in PyTorch's NCHW order. */
function asNchw(t: tf.Tensor): Float32Array {
  return nhwcToNchw(t.dataSync() as Float32Array, t.shape).data;
}

function check(t: TestContext, what: string, actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  const err = relErr(actual, expected);
  t.diagnostic(`${what}: rel err ${err.toExponential(2)}`);
  assert.ok(err < TOLERANCE, `${what}: relative error ${err.toExponential(2)} >= ${TOLERANCE}`);
}

/**
 * y = f(x) and d/dx sum(y * r), r = noise(y's NCHW shape, lossSeed): the golden's loss. Returns NCHW
 * arrays.
 */
function forwardAndGrad(
  f: (x: tf.Tensor4D) => tf.Tensor4D, x: tf.Tensor4D, lossSeed: number,
): { y: Float32Array; yShape: number[]; dx: Float32Array } {
  return tf.tidy(() => {
    const y = f(x);
    const [n, h, w, c] = y.shape;
    const r = noiseNhwc([n, c, h, w], lossSeed);
    const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t as tf.Tensor4D), r)))(x);
    return { y: asNchw(y), yShape: [n, c, h, w], dx: asNchw(dx) };
  });
}

before(async () => {
  assert.ok(await tf.setBackend('cpu'), 'could not select the cpu backend');
});

describe('parity with PyTorch: dilated conv2d (conv2dTorch)', () => {
  const g = readGoldens('op-dilated-conv.safetensors');
  const cases = g.meta<{ name: string; x: Shape4; w: Shape4; padding: number; dilation: number; seed: number }[]>('cases');
  for (const c of cases) {
    test(`${c.name}: x [${c.x}] w [${c.w}] padding ${c.padding} dilation ${c.dilation}`, (t) => {
      tf.tidy(() => {
        const x = noiseNhwc(c.x, c.seed);
        const wOihw = noise(c.w, c.seed + 1).map((v) => v * 0.5);
        const wHwio = oihwToHwio(wOihw, c.w);
        const w = tf.tensor4d(wHwio.data, wHwio.shape as Shape4);
        const geom = { stride: 1, padding: c.padding, dilation: c.dilation };
        const y = conv2dTorch(x, w, geom);
        const [n, h, wd, co] = y.shape;
        const r = noiseNhwc([n, co, h, wd], c.seed + 2);
        const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(conv2dTorch(a as tf.Tensor4D, b as tf.Tensor4D, geom), r)))([x, w]);
        const yGold = g.get(`${c.name}/y`);
        assert.deepEqual([n, co, h, wd], yGold.shape, 'output shape');
        check(t, 'y', asNchw(y), yGold.data);
        // tfjs's own dilated forward conv (no gradient exists for it) agrees too
        const native = tf.conv2d(x, w, 1, c.padding === 0 ? 'valid' : c.padding, 'NHWC', c.dilation);
        check(t, 'y (tf.conv2d with dilations, forward only)', asNchw(native), yGold.data);
        check(t, 'grad x', asNchw(dx), g.get(`${c.name}/grad_x`).data);
        check(t, 'grad w', hwioToOihw(dw.dataSync() as Float32Array, dw.shape).data, g.get(`${c.name}/grad_w`).data);
      });
    });
  }
});

describe('parity with PyTorch: grouped conv2d (groupedConv2dTorch), PyConv\'s kernels and groups', () => {
  const g = readGoldens('op-grouped-conv.safetensors');
  const cases = g.meta<{
    name: string; x: Shape4; w: Shape4; groups: number; stride: number; padding: number; dilation: number; seed: number;
  }[]>('cases');
  for (const backend of ['cpu', 'wasm'] as const) {
    for (const c of cases) {
      test(`${backend}: ${c.name}: x [${c.x}] w [${c.w}] groups ${c.groups} stride ${c.stride} dilation ${c.dilation}`, async (t) => {
        await loadBackend(backend);
        try {
          tf.tidy(() => {
            const x = noiseNhwc(c.x, c.seed);
            const wHwio = oihwToHwio(noise(c.w, c.seed + 1).map((v) => v * 0.5), c.w);
            const w = tf.tensor4d(wHwio.data, wHwio.shape as Shape4);
            const geom = { stride: c.stride, padding: c.padding, dilation: c.dilation };
            const f = (a: tf.Tensor, b: tf.Tensor) => groupedConv2dTorch(a as tf.Tensor4D, b as tf.Tensor4D, geom, c.groups);
            const y = f(x, w);
            const [n, h, wd, co] = y.shape;
            assert.deepEqual([n, co, h, wd], g.get(`${c.name}/y`).shape, 'output shape');
            const r = noiseNhwc([n, co, h, wd], c.seed + 2);
            const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, b), r)))([x, w]);
            check(t, 'y', asNchw(y), g.get(`${c.name}/y`).data);
            check(t, 'grad x', asNchw(dx), g.get(`${c.name}/grad_x`).data);
            check(t, 'grad w', hwioToOihw(dw.dataSync() as Float32Array, dw.shape).data, g.get(`${c.name}/grad_w`).data);
          });
        } finally {
          await tf.setBackend('cpu');
        }
      });
    }
  }
});

describe('parity with PyTorch: adaptive average pooling (adaptiveAvgPool2d)', () => {
  const g = readGoldens('op-adaptive-avg-pool.safetensors');
  const cases = g.meta<{ name: string; x: Shape4; bins: number; seed: number }[]>('cases');
  for (const c of cases) {
    test(`${c.name} -> ${c.bins}x${c.bins}`, (t) => {
      const x = noiseNhwc(c.x, c.seed);
      const { y, yShape, dx } = forwardAndGrad((a) => adaptiveAvgPool2d(a, c.bins, c.bins), x, c.seed + c.bins);
      x.dispose();
      const yGold = g.get(`${c.name}/bins${c.bins}/y`);
      assert.deepEqual(yShape, yGold.shape, 'output shape');
      check(t, 'y', y, yGold.data);
      check(t, 'grad x', dx, g.get(`${c.name}/bins${c.bins}/grad_x`).data);
    });
  }
});

describe('parity with PyTorch: bilinear resize (resizeBilinear)', () => {
  const g = readGoldens('op-resize-bilinear.safetensors');
  const cases = g.meta<{ name: string; x: Shape4; size: [number, number]; align_corners: boolean; seed: number }[]>('cases');
  for (const c of cases) {
    const ac = c.align_corners ? 1 : 0;
    test(`${c.name} align_corners=${c.align_corners}`, (t) => {
      const x = noiseNhwc(c.x, c.seed);
      const { y, yShape, dx } = forwardAndGrad(
        (a) => resizeBilinear(a, c.size[0], c.size[1], c.align_corners), x, c.seed + 1 + ac);
      x.dispose();
      const yGold = g.get(`${c.name}/ac${ac}/y`);
      assert.deepEqual(yShape, yGold.shape, 'output shape');
      check(t, 'y', y, yGold.data);
      check(t, 'grad x', dx, g.get(`${c.name}/ac${ac}/grad_x`).data);
    });
  }

  // semseg's zoom factor 8: a 473x473 map to the 60x60 feature grid and back; the loss is on the
  // final 473x473 map. 473x473 results are compared on the stored subset of rows/columns and through
  // their full row and column sums.
  const rt = g.meta<{ size: number; mid: number; seed: number }>('roundtrip');
  const sub = Array.from(g.get('roundtrip/sub').data);
  for (const alignCorners of [true, false]) {
    const ac = alignCorners ? 1 : 0;
    test(`round trip ${rt.size} -> ${rt.mid} -> ${rt.size} align_corners=${alignCorners}`, (t) => {
      const n = rt.size;
      const p = `roundtrip/ac${ac}`;
      tf.tidy(() => {
        const x = noiseNhwc([1, 1, n, n], rt.seed);
        const r = noiseNhwc([1, 1, n, n], rt.seed + 1 + ac);
        const down = (a: tf.Tensor4D) => resizeBilinear(a, rt.mid, rt.mid, alignCorners);
        const up = (a: tf.Tensor4D) => resizeBilinear(a, n, n, alignCorners);
        const mid = down(x);
        const y = up(mid);
        const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(up(down(a as tf.Tensor4D)), r)))(x);
        const dmid = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(up(a as tf.Tensor4D), r)))(mid);
        check(t, 'mid (60x60)', mid.dataSync(), g.get(`${p}/mid`).data);
        check(t, 'grad mid', dmid.dataSync(), g.get(`${p}/grad_mid`).data);
        // single channel, batch 1: NHWC and NCHW coincide
        for (const [label, full] of [['y', y.dataSync()], ['grad x', dx.dataSync()]] as const) {
          const key = label === 'y' ? 'y' : 'grad_x';
          const picked = new Float32Array(sub.length * sub.length);
          const rows = new Float64Array(n);
          const cols = new Float64Array(n);
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < n; j++) {
              rows[i] += full[i * n + j];
              cols[j] += full[i * n + j];
            }
          }
          sub.forEach((i, a) => sub.forEach((j, b) => { picked[a * sub.length + b] = full[i * n + j]; }));
          check(t, `${label} (${sub.length}x${sub.length} subset)`, picked, g.get(`${p}/${key}_sub`).data);
          check(t, `${label} row sums`, rows, g.get(`${p}/${key}_rowsum`).data);
          check(t, `${label} column sums`, cols, g.get(`${p}/${key}_colsum`).data);
        }
      });
    });
  }
});
