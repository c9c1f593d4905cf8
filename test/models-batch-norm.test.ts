// BatchNorm2d: the fused customGrad gradient equals autodiff of the textbook formula; running
// statistics follow PyTorch; eval mode uses them; SyncBN over 2 simulated ranks equals 1 rank with the
// whole batch; no tensors leak.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { BatchNorm2d } from '../src/models/batch-norm';
import { Conv2d } from '../src/models/conv2d';
import { Module } from '../src/models/module';
import type { ForwardContext, StatReducer } from '../src/models/context';
import { randn } from './helpers/tensors';

/** ||a - b|| / ||b||: robust to single near-zero entries. */
function relErr(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.norm(tf.sub(a, b)).dataSync()[0] / Math.max(1e-30, tf.norm(b).dataSync()[0]));
}

const TRAIN: ForwardContext = { training: true, seed: 0 };
const EVAL: ForwardContext = { training: false, seed: 0 };

function naiveBN(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps = 1e-5): tf.Tensor {
  const mean = tf.mean(x, [0, 1, 2]);
  const variance = tf.mean(tf.square(tf.sub(x, mean)), [0, 1, 2]);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), g), b);
}

before(async () => {
  await tf.setBackend('cpu');
});

describe('BatchNorm2d training', () => {
  test('output and gradients equal autodiff of the naive formula (rel err < 1e-5)', () => {
    const bn = new BatchNorm2d(5);
    bn.initialize(0);
    tf.tidy(() => {
      bn.weight.assign(randn([5], 1, 1, 0.5) as tf.Tensor1D);
      bn.bias.assign(randn([5], 2) as tf.Tensor1D);
      const x = randn([3, 7, 9, 5], 3, 2, 3);
      const r = randn([3, 7, 9, 5], 4);
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(bn.forward(x as tf.Tensor4D, TRAIN), r)) as tf.Scalar,
        [bn.weight, bn.bias]);
      const dxOurs = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(bn.forward(xx as tf.Tensor4D, TRAIN), r)) as tf.Scalar)(x);
      const yOurs = bn.forward(x as tf.Tensor4D, TRAIN);

      const [dxRef, dgRef, dbRef] = tf.grads((xx: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(naiveBN(xx, g, b), r)) as tf.Scalar)([x, bn.weight, bn.bias]);
      const yRef = naiveBN(x, bn.weight, bn.bias);

      assert.ok(relErr(yOurs, yRef) < 1e-5, `y ${relErr(yOurs, yRef)}`);
      assert.ok(relErr(dxOurs, dxRef) < 1e-5, `dx ${relErr(dxOurs, dxRef)}`);
      assert.ok(relErr(grads[bn.weight.name], dgRef) < 1e-5, `dgamma ${relErr(grads[bn.weight.name], dgRef)}`);
      assert.ok(relErr(grads[bn.bias.name], dbRef) < 1e-5, `dbeta ${relErr(grads[bn.bias.name], dbRef)}`);
    });
    bn.dispose();
  });

  test('running stats: momentum 0.1 toward the batch mean and the UNBIASED batch variance', () => {
    const bn = new BatchNorm2d(2);
    bn.initialize(0);
    // Channel 0 holds 1..8, channel 1 holds 10 * (1..8); batch of 2 images of 2x2.
    const vals: number[] = [];
    for (let i = 1; i <= 8; i++) vals.push(i, 10 * i);
    tf.tidy(() => bn.forward(tf.tensor4d(vals, [2, 2, 2, 2]), TRAIN));
    const mean = 4.5;
    const unbiased = 42 / 7; // sum((i - 4.5)^2) = 42 over 8 values
    const rm = bn.runningMean.dataSync();
    const rv = bn.runningVar.dataSync();
    assert.ok(Math.abs(rm[0] - 0.1 * mean) < 1e-6 && Math.abs(rm[1] - 0.1 * 10 * mean) < 1e-5, `${rm}`);
    assert.ok(Math.abs(rv[0] - (0.9 + 0.1 * unbiased)) < 1e-5, `${rv}`);
    assert.ok(Math.abs(rv[1] - (0.9 + 0.1 * 100 * unbiased)) < 1e-3, `${rv}`);
    bn.dispose();
  });

  test('refuses a batch with one value per channel, as PyTorch does', () => {
    const bn = new BatchNorm2d(3);
    assert.throws(() => tf.tidy(() => bn.forward(tf.zeros([1, 1, 1, 3]) as tf.Tensor4D, TRAIN)), /more than 1 value/);
    bn.dispose();
  });
});

describe('BatchNorm2d eval', () => {
  test('normalises with the running statistics, not the batch', () => {
    const bn = new BatchNorm2d(2);
    bn.initialize(0);
    tf.tidy(() => {
      bn.runningMean.assign(tf.tensor1d([1, -2]));
      bn.runningVar.assign(tf.tensor1d([4, 0.25]));
      bn.weight.assign(tf.tensor1d([2, 1]));
      bn.bias.assign(tf.tensor1d([0.5, 0]));
      const x = tf.tensor4d([3, 0, 5, -1], [1, 2, 1, 2]);
      const y = bn.forward(x, EVAL).dataSync();
      const expect = [
        ((3 - 1) / Math.sqrt(4 + 1e-5)) * 2 + 0.5,
        (0 + 2) / Math.sqrt(0.25 + 1e-5),
        ((5 - 1) / Math.sqrt(4 + 1e-5)) * 2 + 0.5,
        (-1 + 2) / Math.sqrt(0.25 + 1e-5),
      ];
      for (let i = 0; i < 4; i++) assert.ok(Math.abs(y[i] - expect[i]) < 1e-5, `${y[i]} vs ${expect[i]}`);
      // and leaves the running statistics alone
      assert.deepEqual(Array.from(bn.runningMean.dataSync()), [1, -2]);
    });
    bn.dispose();
  });
});

/**
 * A two-layer net (conv -> BN -> ReLU -> conv -> BN) so that SyncBN's collectives depend on one
 * another across layers, as in a real model.
 */
class TinyNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  constructor() {
    super();
    this.conv1 = this.registerModule('conv1', new Conv2d(3, 4, 3, { padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(4, { sync: true }));
    this.conv2 = this.registerModule('conv2', new Conv2d(4, 3, 3, { padding: 2, dilation: 2, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(3, { sync: true }));
  }
  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    const h = tf.relu(this.bn1.forward(this.conv1.forward(x), ctx)) as tf.Tensor4D;
    return this.bn2.forward(this.conv2.forward(h), ctx);
  }
}

interface StepResult {
  y: tf.Tensor;
  dx: tf.Tensor;
  grads: Map<string, tf.Tensor>;
  buffers: Map<string, tf.Tensor>;
}

/** Forward + backward of sum(net(x) * r) on the given context; everything returned is kept. */
function step(net: TinyNet, x: tf.Tensor4D, r: tf.Tensor, ctx: ForwardContext): StepResult {
  let result: StepResult | undefined;
  tf.tidy(() => {
    let y: tf.Tensor | undefined;
    const params = net.namedParameters();
    const f = (xx: tf.Tensor, ...ps: tf.Tensor[]) => {
      void ps;
      const out = net.forward(xx as tf.Tensor4D, ctx);
      y = tf.keep(out.clone());
      return tf.sum(tf.mul(out, r)) as tf.Scalar;
    };
    const all = tf.grads(f)([x, ...params.map(([, v]) => v)]);
    const grads = new Map(params.map(([n], i) => [n, tf.keep(all[i + 1])]));
    const buffers = new Map(net.namedBuffers().map(([n, v]) => [n, tf.keep(v.clone())]));
    result = { y: y!, dx: tf.keep(all[0]), grads, buffers };
  });
  return result!;
}

/**
 * Simulates synchronous collectives among ranks that we can only run one after another. Each call
 * records the caller's contribution and answers with the sum of the latest contributions of all
 * ranks. Running all ranks' steps repeatedly, contributions computed from stale answers get replaced
 * by ones computed from better answers; once a whole round reproduces the previous round's
 * contributions bit for bit, every answer was the true sum, i.e. this is exactly what synchronous
 * collectives would have produced (the collectives form a dependency chain with no cycles, so the
 * fixed point is unique and is reached within (number of collectives + 1) rounds).
 */
class ReplayReducer {
  readonly worldSize: number;
  rank = 0;
  private contributions = new Map<string, Float32Array[]>();
  private changed = false;
  readonly calls: string[][] = [];

  constructor(worldSize: number) {
    this.worldSize = worldSize;
    for (let r = 0; r < worldSize; r++) this.calls.push([]);
  }

  forRank(rank: number): StatReducer {
    return {
      worldSize: this.worldSize,
      allreduceSum: (name: string, data: Float32Array) => {
        this.calls[rank].push(name);
        let slot = this.contributions.get(name);
        if (slot === undefined) {
          slot = Array.from({ length: this.worldSize }, () => new Float32Array(data.length));
          this.contributions.set(name, slot);
          this.changed = true;
        }
        if (slot[rank].some((v, i) => v !== data[i])) this.changed = true;
        slot[rank] = Float32Array.from(data);
        const sum = new Float32Array(data.length);
        for (const c of slot) for (let i = 0; i < sum.length; i++) sum[i] += c[i];
        return sum;
      },
    };
  }

  /** Starts a round; returns whether the previous round changed any contribution. */
  newRound(): boolean {
    const c = this.changed;
    this.changed = false;
    for (const list of this.calls) list.length = 0;
    return c;
  }
}

describe('SyncBN', () => {
  test('2 ranks with half the batch each = 1 rank with the whole batch (outputs, grads, running stats)', () => {
    const seed = 42;
    const full = new TinyNet();
    full.initialize(seed);
    const ranks = [new TinyNet(), new TinyNet()];
    const x = randn([4, 7, 9, 3], 5, 1, 2) as tf.Tensor4D;
    const r = randn([4, 7, 9, 3], 6);
    const xs = [tf.slice(x, [0, 0, 0, 0], [2, -1, -1, -1]), tf.slice(x, [2, 0, 0, 0], [2, -1, -1, -1])] as tf.Tensor4D[];
    const rs = [tf.slice(r, [0, 0, 0, 0], [2, -1, -1, -1]), tf.slice(r, [2, 0, 0, 0], [2, -1, -1, -1])];

    const ref = step(full, x, r, TRAIN); // no reducer: plain BN over the whole batch

    const reducer = new ReplayReducer(2);
    let results: StepResult[] = [];
    let rounds = 0;
    for (;;) {
      for (const res of results) tf.dispose([res.y, res.dx, ...res.grads.values(), ...res.buffers.values()]);
      // Each round replays one training step from the same initial state.
      for (const net of ranks) net.initialize(seed);
      results = ranks.map((net, k) => step(net, xs[k], rs[k], { training: true, seed: 0, statReducer: reducer.forRank(k) }));
      rounds++;
      if (!reducer.newRound() && rounds > 1) break;
      assert.ok(rounds < 10, 'replay did not converge');
    }
    // 4 collectives in a chain need a few rounds; one more proves the fixed point.
    assert.ok(rounds >= 3, `converged suspiciously fast (${rounds} rounds)`);

    const y2 = tf.concat(results.map((res) => res.y), 0);
    const dx2 = tf.concat(results.map((res) => res.dx), 0);
    assert.ok(relErr(y2, ref.y) < 1e-5, `y ${relErr(y2, ref.y)}`);
    assert.ok(relErr(dx2, ref.dx) < 1e-4, `dx ${relErr(dx2, ref.dx)}`);
    for (const [name, g] of ref.grads) {
      // With a summed loss the full-batch gradient is the sum of the ranks' (DDP sums, then scales).
      const g2 = tf.add(results[0].grads.get(name)!, results[1].grads.get(name)!);
      assert.ok(relErr(g2, g) < 1e-4, `${name}: ${relErr(g2, g)}`);
    }
    for (const [name, b] of ref.buffers) {
      for (const res of results) assert.ok(relErr(res.buffers.get(name)!, b) < 1e-5, `${name}`);
    }
    tf.dispose([x, r, ...xs, ...rs, y2, dx2]);
    full.dispose();
    ranks.forEach((n) => n.dispose());
  });

  test('names its collectives <path>/fwd and <path>/bwd in forward and reverse layer order', () => {
    const net = new TinyNet();
    net.initialize(1);
    const reducer = new ReplayReducer(1);
    const res = step(net, randn([2, 5, 5, 3], 1) as tf.Tensor4D, randn([2, 5, 5, 3], 2), {
      training: true, seed: 0, statReducer: reducer.forRank(0),
    });
    assert.deepEqual(reducer.calls[0], ['bn1/fwd', 'bn2/fwd', 'bn2/bwd', 'bn1/bwd']);
    tf.dispose([res.y, res.dx, ...res.grads.values(), ...res.buffers.values()]);
    net.dispose();
  });

  test('a one-rank reducer gives plain BN; sync=false ignores a reducer', () => {
    const identity: StatReducer = { worldSize: 1, allreduceSum: (_n, d) => Float32Array.from(d) };
    let called = 0;
    const counting: StatReducer = { worldSize: 1, allreduceSum: (_n, d) => { called++; return d; } };
    const a = new TinyNet();
    const b = new TinyNet();
    a.initialize(3);
    b.initialize(3);
    const x = randn([2, 6, 5, 3], 7, 3, 2) as tf.Tensor4D;
    const r = randn([2, 6, 5, 3], 8);
    const ra = step(a, x, r, { training: true, seed: 0, statReducer: identity });
    const rb = step(b, x, r, TRAIN);
    assert.ok(relErr(ra.y, rb.y) < 1e-5);
    assert.ok(relErr(ra.dx, rb.dx) < 1e-5);

    const plain = new BatchNorm2d(3, { sync: false });
    tf.tidy(() => plain.forward(x, { training: true, seed: 0, statReducer: counting }));
    assert.equal(called, 0);
    tf.dispose([x, r, ra.y, ra.dx, rb.y, rb.dx, ...ra.grads.values(), ...rb.grads.values(),
      ...ra.buffers.values(), ...rb.buffers.values()]);
    a.dispose();
    b.dispose();
    plain.dispose();
  });
});

describe('BatchNorm2d memory', () => {
  test('forward + backward in a loop leaks no tensors', () => {
    const bn = new BatchNorm2d(4);
    bn.initialize(0);
    const x = randn([2, 5, 5, 4], 1) as tf.Tensor4D;
    const run = () => tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(bn.forward(x, TRAIN))) as tf.Scalar);
      tf.dispose([value, ...Object.values(grads)]);
      tf.dispose(bn.forward(x, EVAL));
    });
    run();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) run();
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
    bn.dispose();
  });
});
