// Module: dotted state_dict names, seed-and-name-determined init, state loading, disposal.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { Module } from '../src/models/module';
import { Conv2d } from '../src/models/conv2d';
import { BatchNorm2d } from '../src/models/batch-norm';
import { Sequential } from '../src/models/sequential';
import { ReLU } from '../src/models/relu';
import { Dropout2d } from '../src/models/dropout';

class Block extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  readonly seq: Sequential;
  constructor() {
    super();
    this.conv = this.registerModule('conv', new Conv2d(2, 3, 3, { bias: false }));
    this.bn = this.registerModule('bn', new BatchNorm2d(3));
    this.seq = this.registerModule('seq', new Sequential([new Conv2d(3, 3, 1), new ReLU(), new BatchNorm2d(3)]));
  }
}

class Root extends Module {
  readonly body: Block;
  constructor() {
    super();
    this.body = this.registerModule('body', new Block());
  }
}

before(async () => {
  await tf.setBackend('cpu');
});

describe('Module naming', () => {
  test('parameters and buffers get PyTorch state_dict names; Sequential counts parameterless members', () => {
    const root = new Root();
    assert.deepEqual(root.namedParameters().map(([n]) => n), [
      'body.conv.weight', 'body.bn.weight', 'body.bn.bias',
      'body.seq.0.weight', 'body.seq.0.bias', 'body.seq.2.weight', 'body.seq.2.bias',
    ]);
    assert.deepEqual(root.namedBuffers().map(([n]) => n), [
      'body.bn.running_mean', 'body.bn.running_var', 'body.seq.2.running_mean', 'body.seq.2.running_var',
    ]);
    assert.ok(root.namedParameters().every(([, v]) => v.trainable));
    assert.ok(root.namedBuffers().every(([, v]) => !v.trainable));
    assert.equal(root.body.seq.at(2).path, 'body.seq.2');
    assert.equal(root.path, '');
    root.dispose();
  });

  test('a module cannot be registered twice', () => {
    const conv = new Conv2d(1, 1, 1);
    new Sequential([conv]);
    assert.throws(() => new Sequential([conv]), /already registered as '0'/);
    conv.dispose();
  });
});

describe('Module.initialize', () => {
  test('values depend only on (seed, full name): a subtree initialised alone matches the whole tree', () => {
    const a = new Root();
    const b = new Root();
    const c = new Root();
    a.initialize(5);
    b.body.initialize(5); // named body.* from its root, so the same draws
    c.initialize(6);
    const av = a.namedParameters();
    const bv = new Map(b.namedParameters());
    const cv = new Map(c.namedParameters());
    for (const [name, v] of av) {
      assert.deepEqual(Array.from(v.dataSync()), Array.from(bv.get(name)!.dataSync()), name);
    }
    const w = 'body.conv.weight';
    assert.notDeepEqual(Array.from(a.namedParameters().find(([n]) => n === w)![1].dataSync()),
      Array.from(cv.get(w)!.dataSync()));
    [a, b, c].forEach((m) => m.dispose());
  });
});

describe('Module.loadStateDict', () => {
  test('assigns by name, checks shapes, and in strict mode reports missing and unexpected keys', () => {
    const root = new Root();
    const state = new Map<string, tf.Tensor>();
    for (const [n, v] of [...root.namedParameters(), ...root.namedBuffers()]) state.set(n, tf.fill(v.shape, 0.5));
    root.loadStateDict(state);
    assert.ok(root.namedBuffers().every(([, v]) => v.dataSync().every((x) => x === 0.5)));

    const partial = new Map(state);
    partial.delete('body.bn.running_var');
    partial.set('body.extra', tf.zeros([1]));
    assert.throws(() => root.loadStateDict(partial), /missing \[body\.bn\.running_var\], unexpected \[body\.extra\]/);
    root.loadStateDict(partial, false); // non-strict ignores both

    const wrong = new Map([['body.conv.weight', tf.zeros([3, 3, 3, 2])]]);
    assert.throws(() => root.loadStateDict(wrong, false), /shape \[3,3,2,3\]/);
    tf.dispose([...state.values(), ...partial.values(), ...wrong.values()]);
    root.dispose();
  });
});

describe('Module.dispose', () => {
  test('frees every variable', () => {
    const before = tf.memory().numTensors;
    const root = new Root();
    root.initialize(1);
    assert.ok(tf.memory().numTensors > before);
    root.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('Dropout2d', () => {
  test('drops whole channels, scales survivors by 1/(1-p), and is reproducible from ctx.seed', () => {
    class Holder extends Module {
      readonly dropout = this.registerModule('dropout', new Dropout2d(0.5));
    }
    const h = new Holder();
    tf.tidy(() => {
      const x = tf.ones([4, 3, 3, 16]) as tf.Tensor4D;
      const y1 = h.dropout.forward(x, { training: true, seed: 11 });
      const y2 = h.dropout.forward(x, { training: true, seed: 11 });
      const y3 = h.dropout.forward(x, { training: true, seed: 12 });
      assert.deepEqual(Array.from(y1.dataSync()), Array.from(y2.dataSync()));
      assert.notDeepEqual(Array.from(y1.dataSync()), Array.from(y3.dataSync()));
      const v = y1.dataSync();
      const values = new Set(v);
      assert.deepEqual([...values].sort(), [0, 2]);
      // constant over each (sample, channel) map
      for (let n = 0; n < 4; n++) for (let c = 0; c < 16; c++) {
        const first = v[n * 144 + c];
        for (let p = 0; p < 9; p++) assert.equal(v[n * 144 + p * 16 + c], first);
      }
      const evalOut = h.dropout.forward(x, { training: false, seed: 11 });
      assert.equal(evalOut, x);
    });
    h.dispose();
  });
});
