// Numeric parity of the depthwise (groups = channels) convolution with PyTorch's F.conv2d, at
// DeepLab's ASPP dilations (1, 2, 12, 24, 36) on small odd maps where most or all outer taps fall in
// the padding: output, input gradient and weight gradient, on cpu and wasm, through the
// Conv2d (groups = channels) with the weight loaded from PyTorch's [C, 1, k, k] by the same OIHW -> HWIO
// transpose as every other conv weight. Goldens: op-depthwise-conv.safetensors (README there).

import { before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadBackend } from '../src/backend/load-backend';
import { Conv2d } from '../src/models/conv2d';
import {
  TOLERANCE, hwioToOihw, nchwToNhwc, nhwcToNchw, noise, oihwToHwio, readGoldens, relErr,
} from './fixtures/parity/goldens';

type Shape4 = [number, number, number, number];

interface Case { name: string; x: Shape4; w: Shape4; padding: number; dilation: number; seed: number }

function noiseNhwc(shapeNchw: readonly number[], seed: number): tf.Tensor4D {
  const t = nchwToNhwc(noise(shapeNchw, seed), shapeNchw);
  return tf.tensor4d(t.data, t.shape as Shape4);
}

function check(t: TestContext, what: string, actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  const err = relErr(actual, expected);
  t.diagnostic(`${what}: rel err ${err.toExponential(2)}`);
  assert.ok(err < TOLERANCE, `${what}: relative error ${err.toExponential(2)} >= ${TOLERANCE}`);
}

const g = readGoldens('op-depthwise-conv.safetensors');
const cases = g.meta<Case[]>('cases');

function runCases(backend: 'cpu' | 'wasm'): void {
  describe(`parity with PyTorch: depthwise conv on ${backend}`, () => {
    before(async () => {
      assert.equal(await loadBackend(backend), backend);
    });
    for (const c of cases) {
      test(`${c.name}: x [${c.x}] padding ${c.padding} dilation ${c.dilation}`, (t) => {
        const [ch, , k] = c.w;
        const conv = new Conv2d(ch, ch, k, { padding: c.padding, dilation: c.dilation, groups: ch, bias: false });
        const hwio = oihwToHwio(noise(c.w, c.seed + 1).map((v) => v * 0.5), c.w);
        assert.deepEqual(hwio.shape, conv.weight.shape);
        conv.loadStateDict(new Map([['weight', tf.tensor4d(hwio.data, hwio.shape as Shape4)]]));
        tf.tidy(() => {
          const x = noiseNhwc(c.x, c.seed);
          const y = conv.forward(x);
          const [n, h, w] = y.shape;
          const r = noiseNhwc([n, ch, h, w], c.seed + 2);
          const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(conv.forward(a as tf.Tensor4D), r)))(x);
          const { grads } = tf.variableGrads(() => tf.sum(tf.mul(conv.forward(x), r)) as tf.Scalar, [conv.weight]);
          const dw = grads[conv.weight.name];
          const yGold = g.get(`${c.name}/y`);
          assert.deepEqual([n, ch, h, w], yGold.shape, 'output shape');
          check(t, 'y', nhwcToNchw(y.dataSync() as Float32Array, y.shape).data, yGold.data);
          check(t, 'grad x', nhwcToNchw(dx.dataSync() as Float32Array, dx.shape).data, g.get(`${c.name}/grad_x`).data);
          check(t, 'grad w', hwioToOihw(dw.dataSync() as Float32Array, dw.shape).data, g.get(`${c.name}/grad_w`).data);
        });
        conv.dispose();
      });
    }
  });
}

runCases('cpu');
runCases('wasm');
