// PSPNet as built from a ModelConfig: output shapes, mmseg state_dict keys, deterministic init, a
// full training step's gradients and memory, eval mode, SyncBN wiring, config errors.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { buildModel, BACKBONE_TYPES, HEAD_TYPES, type ModelConfig } from '../src/models/build-model';
import type { StatReducer } from '../src/models/context';
import { randn } from './helpers/tensors';

function config(over: {
  depth?: 18 | 50; os?: 8 | 16; stem?: 'v1b' | 'v1c' | 'v1d'; aux?: boolean; norm?: 'bn' | 'syncbn'; alignCorners?: boolean;
} = {}): ModelConfig {
  return {
    norm: over.norm ?? 'bn',
    align_corners: over.alignCorners ?? false,
    backbone: { type: 'resnet', depth: over.depth ?? 18, stem: over.stem ?? 'v1b', output_stride: over.os ?? 8, base_channels: 8 },
    head: { type: 'psp', channels: 8, dropout: 0.1, pool_scales: [1, 2, 3, 6] },
    aux: { enabled: over.aux ?? true, channels: 8, weight: 0.4, dropout: 0.1 },
  };
}

before(async () => {
  await tf.setBackend('cpu');
});

describe('PSPNet output shapes', () => {
  const cases = [
    { depth: 18 as const, os: 8 as const, h: 33, w: 45 },
    { depth: 18 as const, os: 16 as const, h: 37, w: 29 },
    { depth: 50 as const, os: 8 as const, h: 35, w: 31 },
    { depth: 50 as const, os: 16 as const, h: 33, w: 33 },
  ];
  for (const { depth, os, h, w } of cases) {
    test(`R${depth} OS${os} on ${h}x${w}: logits at the input size`, () => {
      const model = buildModel(config({ depth, os }), 7, 1);
      tf.tidy(() => {
        const { out, aux } = model.forward(randn([1, h, w, 3], 1) as tf.Tensor4D, { training: false, seed: 0 });
        assert.deepEqual(out.shape, [1, h, w, 7]);
        assert.equal(aux, undefined, 'no aux logits outside training');
      });
      model.dispose();
    });
  }

  test('training mode returns aux logits at the input size too', () => {
    const model = buildModel(config({ depth: 18, os: 16 }), 4, 1);
    tf.tidy(() => {
      const { out, aux } = model.forward(randn([2, 35, 33, 3], 2) as tf.Tensor4D, { training: true, seed: 0 });
      assert.deepEqual(out.shape, [2, 35, 33, 4]);
      assert.deepEqual(aux?.shape, [2, 35, 33, 4]);
    });
    model.dispose();
    const noAux = buildModel(config({ depth: 18, os: 16, aux: false }), 4, 1);
    tf.tidy(() => {
      const { aux } = noAux.forward(randn([2, 35, 33, 3], 2) as tf.Tensor4D, { training: true, seed: 0 });
      assert.equal(aux, undefined);
    });
    noAux.dispose();
  });
});

describe('PSPNet state_dict keys', () => {
  test('follow mmseg: backbone.*, decode_head.psp_modules.i.1.{conv,bn}, bottleneck, conv_seg, auxiliary_head.convs.0', () => {
    const model = buildModel(config({ depth: 50 }), 19, 0);
    const p = new Map(model.namedParameters().map(([n, v]) => [n, v.shape]));
    const b = new Set(model.namedBuffers().map(([n]) => n));
    const expectShapes: [string, number[]][] = [
      ['backbone.conv1.weight', [7, 7, 3, 8]],
      ['backbone.bn1.weight', [8]],
      ['backbone.layer1.0.conv1.weight', [1, 1, 8, 8]],
      ['backbone.layer1.0.downsample.0.weight', [1, 1, 8, 32]],
      ['backbone.layer1.0.downsample.1.weight', [32]],
      ['decode_head.psp_modules.0.1.conv.weight', [1, 1, 256, 8]],
      ['decode_head.psp_modules.3.1.conv.weight', [1, 1, 256, 8]],
      ['decode_head.psp_modules.0.1.bn.weight', [8]],
      ['decode_head.bottleneck.conv.weight', [3, 3, 256 + 4 * 8, 8]],
      ['decode_head.bottleneck.bn.bias', [8]],
      ['decode_head.conv_seg.weight', [1, 1, 8, 19]],
      ['decode_head.conv_seg.bias', [19]],
      ['auxiliary_head.convs.0.conv.weight', [3, 3, 128, 8]],
      ['auxiliary_head.convs.0.bn.weight', [8]],
      ['auxiliary_head.conv_seg.weight', [1, 1, 8, 19]],
      ['auxiliary_head.conv_seg.bias', [19]],
    ];
    for (const [name, shape] of expectShapes) assert.deepEqual(p.get(name), shape, name);
    for (const name of ['backbone.bn1.running_mean', 'backbone.layer1.0.downsample.1.running_var',
      'decode_head.psp_modules.2.1.bn.running_mean', 'decode_head.bottleneck.bn.running_var',
      'auxiliary_head.convs.0.bn.running_mean']) assert.ok(b.has(name), name);
    // mmseg's convs before BN have no bias; nothing is named outside these three subtrees
    assert.ok(!p.has('decode_head.bottleneck.conv.bias'));
    assert.ok([...p.keys(), ...b].every((k) => /^(backbone|decode_head|auxiliary_head)\./.test(k)));
    model.dispose();

    const noAux = buildModel(config({ aux: false }), 19, 0);
    assert.ok(!noAux.namedParameters().some(([n]) => n.startsWith('auxiliary_head')));
    noAux.dispose();
  });
});

describe('PSPNet init', () => {
  test('is a pure function of (seed, name): rebuilds match, other seeds differ, aux does not shift the backbone', () => {
    const a = buildModel(config(), 5, 123);
    const b = buildModel(config(), 5, 123);
    const c = buildModel(config(), 5, 124);
    const d = buildModel(config({ aux: false }), 5, 123);
    const bv = new Map([...b.namedParameters(), ...b.namedBuffers()]);
    const cv = new Map(c.namedParameters());
    const dv = new Map(d.namedParameters());
    let differ = 0;
    for (const [name, v] of [...a.namedParameters(), ...a.namedBuffers()]) {
      const av = Array.from(v.dataSync());
      assert.deepEqual(av, Array.from(bv.get(name)!.dataSync()), name);
      if (dv.has(name)) assert.deepEqual(av, Array.from(dv.get(name)!.dataSync()), name);
      if (name.endsWith('conv.weight') || /conv\d\.weight$/.test(name)) {
        if (av.some((x, i) => x !== cv.get(name)!.dataSync()[i])) differ++;
        else assert.fail(`${name} identical under another seed`);
      }
    }
    assert.ok(differ > 10);
    // conv_seg: normal(0, 0.01), bias 0 (mmseg's decode-head init)
    const seg = a.decode_head.conv_seg;
    assert.ok(seg.bias!.dataSync().every((x) => x === 0));
    const w = Array.from(seg.weight.dataSync());
    const std = Math.sqrt(w.reduce((s, x) => s + x * x, 0) / w.length);
    assert.ok(std > 0.005 && std < 0.015, `conv_seg std ${std}`);
    [a, b, c, d].forEach((m) => m.dispose());
  });
});

describe('PSPNet training step', () => {
  test('variableGrads gives a finite gradient for every parameter and leaks nothing over 3 steps', () => {
    // base_channels 8 at 33x33, batch 2 (the 1x1 pyramid bin's BN needs 2 values). Output stride 16
    // keeps stage 4 at 3x3 instead of 5x5: the cpu backend's filter gradient is slow enough that OS8
    // doubles this test's time; stage 4 is still dilated (2), and models-conv2d covers dilation 4.
    const model = buildModel(config({ depth: 18, os: 16 }), 5, 7);
    const params = model.parameters();
    const x = randn([2, 33, 33, 3], 3) as tf.Tensor4D;
    const target = randn([2, 33, 33, 5], 4);
    let baseline = -1;
    for (let it = 0; it < 3; it++) {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const { out, aux } = model.forward(x, { training: true, seed: it });
          const l = tf.mean(tf.square(tf.sub(out, target)));
          return tf.add(l, tf.mul(0.4, tf.mean(tf.square(tf.sub(aux!, target))))) as tf.Scalar;
        }, params);
        assert.ok(Number.isFinite(value.dataSync()[0]));
        if (it === 0) {
          assert.equal(Object.keys(grads).length, params.length);
          for (const [name, v] of model.namedParameters()) {
            const g = grads[v.name];
            assert.ok(g !== undefined, `no gradient for ${name}`);
            assert.deepEqual(g.shape, v.shape, name);
            assert.ok(g.dataSync().every(Number.isFinite), `non-finite gradient for ${name}`);
          }
          // the classifier and the first conv both receive signal
          assert.ok(tf.max(tf.abs(grads[model.decode_head.conv_seg.weight.name])).dataSync()[0] > 0);
          assert.ok(tf.max(tf.abs(grads[params[0].name])).dataSync()[0] > 0);
        }
        // a real optimizer step, so later iterations run on changed weights
        for (const v of params) v.assign(tf.sub(v, tf.mul(0.01, grads[v.name])));
      });
      if (it === 0) baseline = tf.memory().numTensors;
      else assert.equal(tf.memory().numTensors, baseline, `tensors leaked in step ${it}`);
    }
    tf.dispose([x, target]);
    model.dispose();
  });
});

describe('PSPNet eval mode', () => {
  test('uses running statistics: an image\'s logits do not depend on its batch, and buffers stay put', () => {
    const model = buildModel(config({ depth: 18, os: 16 }), 3, 2);
    const x = randn([2, 33, 33, 3], 8) as tf.Tensor4D;
    tf.tidy(() => { model.forward(x, { training: true, seed: 0 }); }); // moves the running stats off 0/1
    const buffersBefore = model.namedBuffers().map(([, v]) => Array.from(v.dataSync()));
    assert.ok(buffersBefore[0].some((v) => v !== 0), 'training forward updated running_mean');
    tf.tidy(() => {
      const both = model.forward(x, { training: false, seed: 0 }).out;
      const alone = model.forward(tf.slice(x, [0, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D, { training: false, seed: 0 }).out;
      const first = tf.slice(both, [0, 0, 0, 0], [1, -1, -1, -1]);
      assert.ok(tf.max(tf.abs(tf.sub(first, alone))).dataSync()[0] < 1e-4);
      // whereas batch statistics would make the batch matter
      const trainBoth = model.forward(x, { training: true, seed: 0 }).out;
      assert.ok(tf.max(tf.abs(tf.sub(tf.slice(trainBoth, [0, 0, 0, 0], [1, -1, -1, -1]), alone))).dataSync()[0] > 1e-3);
    });
    // only the deliberate training forward above moved them
    const evalOnly = buildModel(config({ depth: 18, os: 16 }), 3, 2);
    const snapshot = evalOnly.namedBuffers().map(([, v]) => Array.from(v.dataSync()));
    tf.tidy(() => { evalOnly.forward(x, { training: false, seed: 0 }); });
    assert.deepEqual(evalOnly.namedBuffers().map(([, v]) => Array.from(v.dataSync())), snapshot);
    x.dispose();
    model.dispose();
    evalOnly.dispose();
  });
});

describe('PSPNet norm config', () => {
  test('syncbn routes every BN through the reducer under its mmseg name; bn never calls it', () => {
    const calls: string[] = [];
    const reducer: StatReducer = { worldSize: 1, allreduceSum: (name, d) => { calls.push(name); return d; } };
    const x = randn([2, 33, 33, 3], 9) as tf.Tensor4D;
    for (const norm of ['bn', 'syncbn'] as const) {
      calls.length = 0;
      const model = buildModel(config({ depth: 18, os: 16, norm }), 3, 0);
      tf.tidy(() => { model.forward(x, { training: true, seed: 0, statReducer: reducer }); });
      if (norm === 'bn') {
        assert.equal(calls.length, 0);
      } else {
        const bnCount = model.namedBuffers().length / 2;
        assert.equal(calls.length, bnCount);
        assert.equal(calls[0], 'backbone.bn1/fwd');
        assert.ok(calls.includes('decode_head.psp_modules.0.1.bn/fwd'));
        assert.ok(calls.includes('auxiliary_head.convs.0.bn/fwd'));
      }
      model.dispose();
    }
    x.dispose();
  });
});

describe('buildModel config errors', () => {
  test('unknown backbone or head types name the valid ones', () => {
    assert.deepEqual(BACKBONE_TYPES, ['resnet', 'pyconvresnet']);
    assert.deepEqual(HEAD_TYPES, ['psp', 'pyconvseg', 'aspp', 'deeplabv3plus']);
    const bad = config();
    (bad.backbone as { type: string }).type = 'vgg';
    assert.throws(() => buildModel(bad, 3, 0), /Unknown backbone type 'vgg'; valid: resnet, pyconvresnet$/);
    const badHead = config();
    (badHead.head as { type: string }).type = 'deeplab';
    assert.throws(() => buildModel(badHead, 3, 0), /Unknown head type 'deeplab'; valid: psp, pyconvseg, aspp, deeplabv3plus$/);
    assert.throws(() => buildModel(config(), 0, 0), /num_classes/);
  });
});
