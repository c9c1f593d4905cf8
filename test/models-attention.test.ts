// DANet's dual attention block after a decode head (model.head.attention: dual): keys and shapes,
// the identity-like start (gammas 0), position and channel attention against direct loop
// references, the channel module's gradient against the literal max-minus-energy formula, a training
// step's gradients and memory, and the config key.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { buildModel, type ModelConfig } from '../src/models/build-model';
import { PositionAttention } from '../src/models/position-attention';
import { ChannelAttention } from '../src/models/channel-attention';
import { DualAttention } from '../src/models/dual-attention';
import { resolveConfig } from '../src/config/load-config';
import { randomData, relativeError } from './helpers/compare';

function config(head: 'psp' | 'deeplabv3plus' | 'aspp', attention: 'none' | 'dual'): ModelConfig {
  return {
    norm: 'bn',
    align_corners: true,
    backbone: { type: 'resnet', depth: 18, stem: 'v1b', output_stride: 8, base_channels: 8, contract_dilation: true },
    head: { type: head, channels: 16, dropout: 0.1, pool_scales: [1, 2, 3, 6], dilations: [1, 2, 3, 4], c1_channels: 6, attention },
    aux: { enabled: true, channels: 8, weight: 0.4, dropout: 0.1 },
  };
}

const tensor = (shape: number[], seed: number, lo = -1, hi = 1): tf.Tensor =>
  tf.tensor(randomData(shape.reduce((a, b) => a * b, 1), seed, lo, hi), shape);

/** x as [N][HW][C] arrays of numbers. */
function positions(x: tf.Tensor4D): number[][][] {
  const [n, h, w, c] = x.shape;
  const d = x.dataSync();
  return Array.from({ length: n }, (_, b) => Array.from({ length: h * w }, (_, p) =>
    Array.from({ length: c }, (_, ch) => d[(b * h * w + p) * c + ch])));
}

function softmaxRow(v: number[]): number[] {
  const m = Math.max(...v);
  const e = v.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** 1x1 conv (HWIO weight, bias) at each position, in float64. */
function project(x: number[][][], weight: tf.Tensor, bias: tf.Tensor): number[][][] {
  const [, , cin, cout] = weight.shape;
  const wd = weight.dataSync();
  const bd = bias.dataSync();
  return x.map((sample) => sample.map((v) => Array.from({ length: cout }, (_, o) => {
    let s = bd[o];
    for (let i = 0; i < cin; i++) s += v[i] * wd[i * cout + o];
    return s;
  })));
}

before(async () => {
  await tf.setBackend('cpu');
});

describe('dual attention keys', () => {
  for (const head of ['psp', 'deeplabv3plus', 'aspp'] as const) {
    test(`${head}: decode_head.attention.pam.{query,key,value}_project, pam.gamma.scale, cam.gamma.scale; none adds nothing`, () => {
      const model = buildModel(config(head, 'dual'), 5, 0);
      const p = new Map(model.namedParameters().map(([n, v]) => [n, v.shape]));
      const expectShapes: [string, number[]][] = [
        ['decode_head.attention.pam.query_project.weight', [1, 1, 16, 2]],
        ['decode_head.attention.pam.query_project.bias', [2]],
        ['decode_head.attention.pam.key_project.weight', [1, 1, 16, 2]],
        ['decode_head.attention.pam.key_project.bias', [2]],
        ['decode_head.attention.pam.value_project.weight', [1, 1, 16, 16]],
        ['decode_head.attention.pam.value_project.bias', [16]],
        ['decode_head.attention.pam.gamma.scale', [1]],
        ['decode_head.attention.cam.gamma.scale', [1]],
      ];
      for (const [name, shape] of expectShapes) assert.deepEqual(p.get(name), shape, name);
      assert.equal([...p.keys()].filter((k) => k.includes('attention')).length, expectShapes.length);
      assert.ok(![...p.keys()].some((k) => k.startsWith('auxiliary_head.attention')), 'the auxiliary head has none');
      for (const name of ['decode_head.attention.pam.gamma.scale', 'decode_head.attention.cam.gamma.scale']) {
        assert.deepEqual(Array.from(model.namedParameters().find(([n]) => n === name)![1].dataSync()), [0], `${name} starts at 0`);
      }
      model.dispose();
      const plain = buildModel(config(head, 'none'), 5, 0);
      assert.ok(!plain.namedParameters().some(([n]) => n.includes('attention')));
      plain.dispose();
    });
  }

  test('an unknown attention is refused, naming the valid ones', () => {
    assert.throws(() => buildModel(config('psp', 'self' as never), 5, 0), /Unknown head attention 'self'; valid: none, dual/);
  });
});

describe('attention modules against loop references', () => {
  test('with gammas 0 the block is 2x (each module the identity)', () => {
    const block = new DualAttention(8);
    block.initialize(1);
    tf.tidy(() => {
      const x = tensor([2, 3, 4, 8], 1) as tf.Tensor4D;
      assert.ok(relativeError(block.forward(x).dataSync(), tf.mul(x, 2).dataSync()) < 1e-6);
    });
    block.dispose();
  });

  test('position attention: softmax over positions of q.k, times v, times gamma, plus x', () => {
    const pam = new PositionAttention(8, 2);
    pam.initialize(2);
    pam.gamma.scale.assign(tf.tensor1d([0.7]));
    tf.tidy(() => {
      const x = tensor([2, 3, 5, 8], 3) as tf.Tensor4D;
      const xs = positions(x);
      const q = project(xs, pam.query_project.weight, pam.query_project.bias!);
      const k = project(xs, pam.key_project.weight, pam.key_project.bias!);
      const v = project(xs, pam.value_project.weight, pam.value_project.bias!);
      const expected: number[] = [];
      xs.forEach((sample, b) => sample.forEach((xi, i) => {
        const a = softmaxRow(k[b].map((kj) => kj.reduce((s, kv, t) => s + kv * q[b][i][t], 0)));
        for (let ch = 0; ch < 8; ch++) {
          const ctx = a.reduce((s, aj, j) => s + aj * v[b][j][ch], 0);
          expected.push(0.7 * ctx + xi[ch]);
        }
      }));
      assert.ok(relativeError(pam.forward(x).dataSync(), expected) < 1e-5);
    });
    pam.dispose();
  });

  test('channel attention: softmax over channels of (row max - X^T X), applied to X, times gamma, plus x', () => {
    const cam = new ChannelAttention();
    cam.initialize(0);
    cam.gamma.scale.assign(tf.tensor1d([-0.6]));
    tf.tidy(() => {
      // values in [0, 0.5): energies of a few units, so the softmax is neither flat nor one-hot
      const x = tensor([2, 3, 4, 6], 4, 0, 0.5) as tf.Tensor4D;
      const xs = positions(x);
      const expected: number[][][] = xs.map((sample) => sample.map((v) => v.slice()));
      xs.forEach((sample, b) => {
        const energy = Array.from({ length: 6 }, (_, c) => Array.from({ length: 6 }, (_, d) =>
          sample.reduce((s, v) => s + v[c] * v[d], 0)));
        const attention = energy.map((row) => softmaxRow(row.map((e) => Math.max(...row) - e)));
        sample.forEach((v, p) => {
          for (let c = 0; c < 6; c++) expected[b][p][c] += -0.6 * attention[c].reduce((s, a, d) => s + a * v[d], 0);
        });
      });
      assert.ok(relativeError(cam.forward(x).dataSync(), expected.flat(2)) < 1e-5);
    });
    cam.dispose();
  });

  test('channel attention\'s gradient equals that of the literal max-minus-energy formula', () => {
    const cam = new ChannelAttention();
    cam.initialize(0);
    cam.gamma.scale.assign(tf.tensor1d([0.9]));
    tf.tidy(() => {
      const x = tensor([2, 3, 4, 6], 5, 0, 0.5) as tf.Tensor4D;
      const r = tensor([2, 3, 4, 6], 6);
      const literal = (t: tf.Tensor4D): tf.Tensor4D => {
        const [n, h, w, c] = t.shape;
        const flat = tf.transpose(tf.reshape(t, [n, h * w, c]), [0, 2, 1]) as tf.Tensor3D; // [n, c, hw]
        const energy = tf.matMul(flat, flat, false, true);
        const attention = tf.softmax(tf.sub(tf.max(energy, -1, true), energy));
        const out = tf.transpose(tf.matMul(attention, flat), [0, 2, 1]);
        return tf.add(tf.mul(tf.reshape(out, [n, h, w, c]), cam.gamma.scale), t) as tf.Tensor4D;
      };
      const ours = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(cam.forward(t as tf.Tensor4D), r)))(x);
      const ref = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(literal(t as tf.Tensor4D), r)))(x);
      assert.ok(relativeError(cam.forward(x).dataSync(), literal(x).dataSync()) < 1e-6);
      assert.ok(relativeError(ours.dataSync(), ref.dataSync()) < 1e-5);
    });
    cam.dispose();
  });
});

describe('dual attention training step', () => {
  test('PSPNet + dual: finite gradients everywhere, non-zero for both gammas, 3 steps leak nothing', () => {
    const model = buildModel({ ...config('psp', 'dual'), align_corners: false }, 4, 3);
    const params = model.parameters();
    const named = new Map(model.namedParameters());
    const x = tensor([2, 33, 33, 3], 7) as tf.Tensor4D;
    const target = tensor([2, 33, 33, 4], 8);
    let baseline = -1;
    for (let it = 0; it < 3; it++) {
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => {
          const { out, aux } = model.forward(x, { training: true, seed: it });
          return tf.add(tf.mean(tf.square(tf.sub(out, target))), tf.mul(0.4, tf.mean(tf.square(tf.sub(aux!, target))))) as tf.Scalar;
        }, params);
        for (const [name, v] of named) assert.ok(grads[v.name].dataSync().every(Number.isFinite), `non-finite gradient for ${name}`);
        for (const name of ['decode_head.attention.pam.gamma.scale', 'decode_head.attention.cam.gamma.scale']) {
          assert.ok(Math.abs(grads[named.get(name)!.name].dataSync()[0]) > 0, `${name} gets a gradient`);
        }
        // gammas start at 0, so the projections only get a gradient once the gammas have moved
        if (it === 2) {
          assert.ok(tf.max(tf.abs(grads[named.get('decode_head.attention.pam.value_project.weight')!.name])).dataSync()[0] > 0);
        }
        for (const v of params) v.assign(tf.sub(v, tf.mul(0.05, grads[v.name])));
      });
      if (it === 0) baseline = tf.memory().numTensors;
      else assert.equal(tf.memory().numTensors, baseline, `tensors leaked in step ${it}`);
    }
    tf.dispose([x, target]);
    model.dispose();
  });

  test('model.head.attention defaults to none and accepts dual', () => {
    assert.equal(resolveConfig({}).model.head.attention, 'none');
    assert.equal(resolveConfig({ overrides: ['model.head.attention=dual'] }).model.head.attention, 'dual');
  });
});
