// PyConvResNet and PyConvSegNet as built from a ModelConfig: grouped convolution against a direct
// computation, iduta's state_dict names and shapes (from a real iduta checkpoint's key list), stage
// shapes and dilations at output stride 8/16/32, config errors, gradients and memory over training
// steps, and the iduta -> segdist key mapping.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadBackend } from '../src/backend/load-backend';
import { Conv2d, groupedConv2dTorch, convOutputSize, type ConvGeometry } from '../src/models/conv2d';
import { MaxPool2d } from '../src/models/max-pool';
import { BatchNorm2d } from '../src/models/batch-norm';
import { PyConvResNet, PYCONV_GROUPS, type PyConvOutputStride } from '../src/models/pyconv-resnet';
import { PyConvHead } from '../src/models/pyconv-head';
import { FCNHead } from '../src/models/fcn-head';
import { EncoderDecoder } from '../src/models/encoder-decoder';
import { buildModel, type ModelConfig } from '../src/models/build-model';
import { resolveConfig } from '../src/config/load-config';
import { ConfigError } from '../src/config/config-error';
import { pyconvsegnetKey } from '../src/weights/pyconvsegnet-keys';
import { torchvisionKey } from '../src/weights/torchvision-keys';
import { randomData, relativeError } from './helpers/compare';
import { trainThreeSteps } from './helpers/train-steps';

const TOLERANCE = 1e-4;
/** Groups that fit base_channels 16 (iduta's need a multiple of 64), with the same level counts. */
const NARROW_GROUPS = [[1, 2, 2, 4], [1, 2, 4], [1, 4], [1]];

function config(over: { os?: 8 | 16; aux?: boolean; contract?: boolean } = {}): ModelConfig {
  return {
    norm: 'bn',
    align_corners: true,
    backbone: {
      type: 'pyconvresnet', depth: 50, stem: 'v1b', output_stride: over.os ?? 8, base_channels: 16,
      contract_dilation: over.contract ?? false, pyconv_groups: NARROW_GROUPS,
    },
    head: { type: 'pyconvseg', channels: 16, dropout: 0.1, pool_scales: [1], pyconv_groups: [1, 2, 4, 8] },
    aux: { enabled: over.aux ?? true, channels: 8, weight: 0.4, dropout: 0.1 },
  };
}

function tensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(randomData(shape.reduce((a, b) => a * b, 1), seed), shape);
}

/**
 * nn.functional.conv2d with groups, written out as loops in float64 on NHWC/HWIO arrays, with the
 * gradients of sum(y * r): the reference the tfjs formulation is checked against.
 */
function directGroupedConv(x: Float32Array, xs: number[], w: Float32Array, ws: number[], r: Float32Array,
                           g: ConvGeometry, groups: number): { y: Float64Array; dx: Float64Array; dw: Float64Array } {
  const [n, h, wd, cin] = xs;
  const [kh, kw, cg, cout] = ws;
  const oh = convOutputSize(h, kh, g);
  const ow = convOutputSize(wd, kw, g);
  const og = cout / groups;
  const y = new Float64Array(n * oh * ow * cout);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        for (let o = 0; o < cout; o++) {
          const grp = Math.floor(o / og);
          const oi = ((b * oh + i) * ow + j) * cout + o;
          let acc = 0;
          for (let a = 0; a < kh; a++) {
            const ih = i * g.stride - g.padding + a * g.dilation;
            if (ih < 0 || ih >= h) continue;
            for (let c = 0; c < kw; c++) {
              const iw = j * g.stride - g.padding + c * g.dilation;
              if (iw < 0 || iw >= wd) continue;
              for (let k = 0; k < cg; k++) {
                const xi = ((b * h + ih) * wd + iw) * cin + grp * cg + k;
                const wi = ((a * kw + c) * cg + k) * cout + o;
                acc += x[xi] * w[wi];
                dx[xi] += w[wi] * r[oi];
                dw[wi] += x[xi] * r[oi];
              }
            }
          }
          y[oi] = acc;
        }
      }
    }
  }
  return { y, dx, dw };
}

describe('grouped convolution', () => {
  // PyConv's kernel/group pairs, strided where PyConv strides (a stage's first block) and dilated
  // where output stride 8/16 dilates (stage 3's 5x5 with groups 4 at dilation 2), on odd sizes.
  const cases = [
    { x: [2, 11, 13, 16], k: 3, groups: 1, cout: 8, stride: 1, dilation: 1 },
    { x: [2, 11, 13, 16], k: 5, groups: 4, cout: 8, stride: 2, dilation: 1 },
    { x: [1, 13, 9, 32], k: 7, groups: 8, cout: 16, stride: 1, dilation: 1 },
    { x: [2, 13, 11, 32], k: 9, groups: 16, cout: 16, stride: 2, dilation: 1 },
    { x: [2, 11, 9, 16], k: 5, groups: 4, cout: 8, stride: 1, dilation: 2 },
    { x: [1, 15, 13, 16], k: 3, groups: 2, cout: 16, stride: 1, dilation: 4 },
  ];
  for (const backend of ['cpu', 'wasm'] as const) {
    for (const c of cases) {
      test(`${backend}: ${c.k}x${c.k} groups ${c.groups} stride ${c.stride} dilation ${c.dilation} on ${c.x}`, async () => {
        await loadBackend(backend);
        const g = { stride: c.stride, padding: c.dilation * Math.floor(c.k / 2), dilation: c.dilation };
        const ws = [c.k, c.k, c.x[3] / c.groups, c.cout];
        const xd = randomData(c.x.reduce((a, b) => a * b, 1), 1);
        const wd = randomData(ws.reduce((a, b) => a * b, 1), 2);
        const ys = [c.x[0], convOutputSize(c.x[1], c.k, g), convOutputSize(c.x[2], c.k, g), c.cout];
        const rd = randomData(ys.reduce((a, b) => a * b, 1), 3);
        const ref = directGroupedConv(xd, c.x, wd, ws, rd, g, c.groups);
        const before = tf.memory().numTensors;
        tf.tidy(() => {
          const x = tf.tensor4d(xd, c.x as [number, number, number, number]);
          const w = tf.tensor4d(wd, ws as [number, number, number, number]);
          const r = tf.tensor(rd, ys);
          const y = groupedConv2dTorch(x, w, g, c.groups);
          assert.deepEqual(y.shape, ys);
          const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.mul(groupedConv2dTorch(a as tf.Tensor4D, b as tf.Tensor4D, g, c.groups), r)))([x, w]);
          for (const [what, ours, theirs] of [['y', y, ref.y], ['dx', dx, ref.dx], ['dw', dw, ref.dw]] as const) {
            const err = relativeError(ours.dataSync(), theirs);
            assert.ok(err < TOLERANCE, `${what}: relative error ${err.toExponential(2)}`);
          }
        });
        assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
      });
    }
  }

  test('Conv2d stores grouped weights as [k, k, in/groups, out] and refuses groups that do not divide', async () => {
    await loadBackend('cpu');
    const conv = new Conv2d(32, 16, 9, { groups: 16, padding: 4, bias: false });
    assert.deepEqual(conv.weight.shape, [9, 9, 2, 16]);
    conv.dispose();
    assert.throws(() => new Conv2d(24, 16, 3, { groups: 16 }), /groups 16 must divide in_channels 24 and out_channels 16/);
    assert.throws(() => tf.tidy(() => groupedConv2dTorch(tf.zeros([1, 5, 5, 12]) as tf.Tensor4D,
      tf.zeros([3, 3, 4, 8]) as tf.Tensor4D, { stride: 1, padding: 1, dilation: 1 }, 2)), /filter expects 4 per group x 2 groups/);
  });
});

describe('PyConvResNet structure (iduta names, relative to backbone.)', () => {
  test('base 64 has iduta\'s PyConvResNet-50 parameters: 24,847,720 less the 1000-class fc', async () => {
    await loadBackend('cpu');
    const net = new PyConvResNet({ depth: 50, baseChannels: 64 });
    assert.equal(net.numParameters(), 24_847_720 - (2048 * 1000 + 1000));
    assert.deepEqual(net.outChannels, [256, 512, 1024, 2048]);
    const p = new Map(net.namedParameters().map(([k, v]) => [k, v.shape]));
    assert.deepEqual(p.get('conv1.weight'), [7, 7, 3, 64]);
    // stage 1: four levels with groups 1/4/8/16, 16 channels each
    assert.deepEqual(p.get('layer1.0.conv2.conv2_1.weight'), [3, 3, 64, 16]);
    assert.deepEqual(p.get('layer1.0.conv2.conv2_4.weight'), [9, 9, 4, 16]);
    // stage 2: three levels 1/4, 1/4, 1/2 of 128; stage 3: two halves of 256; stage 4: one plain 3x3
    assert.deepEqual(p.get('layer2.1.conv2.conv2_3.weight'), [7, 7, 16, 64]);
    assert.deepEqual(p.get('layer3.5.conv2.conv2_2.weight'), [5, 5, 64, 128]);
    assert.deepEqual(p.get('layer4.2.conv2.weight'), [3, 3, 512, 512]);
    // the shortcut's max pool is downsample.0 and has no parameters
    assert.deepEqual(p.get('layer1.0.downsample.1.weight'), [1, 1, 64, 256]);
    assert.ok(p.has('layer4.0.downsample.2.bias'));
    assert.ok(![...p.keys()].some((k) => k.includes('downsample.0') || k.startsWith('layer2.1.downsample')));
    // frozen_stages freezes by these child names: the stem and the four stages
    const children = net.namedChildren().map(([n]) => n);
    assert.deepEqual(net.stageModules.flat(), children);
    net.dispose();
  });

  test('depths 101 and 152 have 23 and 36 blocks in stage 3', async () => {
    await loadBackend('cpu');
    for (const [depth, last] of [[101, 'layer3.22'], [152, 'layer3.35']] as const) {
      const net = new PyConvResNet({ depth, baseChannels: 16, groups: NARROW_GROUPS });
      const names = net.namedParameters().map(([k]) => k);
      assert.ok(names.includes(`${last}.conv3.weight`), `${depth}: ${last}`);
      assert.ok(!names.some((k) => k.startsWith(`layer3.${depth === 101 ? 23 : 36}.`)));
      net.dispose();
    }
    assert.throws(() => new PyConvResNet({ depth: 34 as 50 }), /depth 34 is not one of 50, 101, 152/);
  });

  function geometry(os: PyConvOutputStride, contract = false): Map<string, string> {
    const net = new PyConvResNet({ depth: 50, outputStride: os, baseChannels: 16, groups: NARROW_GROUPS, contractDilation: contract });
    const out = new Map<string, string>();
    for (const [name, m] of net.namedModules()) {
      if (m instanceof Conv2d && m.kernelSize > 1) {
        out.set(name, `s${m.geometry.stride} d${m.geometry.dilation} p${m.geometry.padding}`);
      }
      if (m instanceof MaxPool2d) out.set(name, `pool s${m.stride}`);
    }
    net.dispose();
    return out;
  }

  test('output stride 8 dilates every block of stages 3/4 by 2/4, padding d * (k // 2), shortcut pool at stride 1', async () => {
    await loadBackend('cpu');
    const g = geometry(8);
    assert.equal(g.get('layer1.0.conv2.conv2_4'), 's2 d1 p4');
    assert.equal(g.get('layer1.0.downsample.0'), 'pool s2');
    assert.equal(g.get('layer2.0.conv2.conv2_3'), 's2 d1 p3');
    assert.equal(g.get('layer3.0.conv2.conv2_1'), 's1 d2 p2');
    assert.equal(g.get('layer3.0.conv2.conv2_2'), 's1 d2 p4');
    assert.equal(g.get('layer3.5.conv2.conv2_2'), 's1 d2 p4');
    assert.equal(g.get('layer3.0.downsample.0'), 'pool s1');
    assert.equal(g.get('layer4.0.conv2'), 's1 d4 p4');
    assert.equal(g.get('layer4.2.conv2'), 's1 d4 p4');
    assert.equal(g.get('layer4.0.downsample.0'), 'pool s1');
    const c = geometry(8, true);
    assert.deepEqual([c.get('layer3.0.conv2.conv2_2'), c.get('layer3.1.conv2.conv2_2'), c.get('layer4.0.conv2'), c.get('layer4.1.conv2')],
      ['s1 d1 p2', 's1 d2 p4', 's1 d2 p2', 's1 d4 p4']);
  });

  test('output stride 16 dilates stage 4 only; 32 dilates nothing', async () => {
    await loadBackend('cpu');
    const g = geometry(16);
    assert.deepEqual([g.get('layer3.0.conv2.conv2_2'), g.get('layer3.0.downsample.0'), g.get('layer4.0.conv2'),
      g.get('layer4.1.conv2'), g.get('layer4.0.downsample.0')], ['s2 d1 p2', 'pool s2', 's1 d2 p2', 's1 d2 p2', 'pool s1']);
    const g32 = geometry(32);
    assert.deepEqual([g32.get('layer4.0.conv2'), g32.get('layer4.0.downsample.0')], ['s2 d1 p1', 'pool s2']);
  });

  const down = (l: number) => Math.floor((l - 1) / 2) + 1; // every stride-2 layer here: k odd, pad k // 2
  for (const { os, h, w } of [{ os: 8, h: 35, w: 29 }, { os: 16, h: 33, w: 41 }, { os: 32, h: 37, w: 31 }] as const) {
    test(`stage shapes at output stride ${os} on ${h}x${w}`, async () => {
      await loadBackend('cpu');
      const net = new PyConvResNet({ depth: 50, outputStride: os, baseChannels: 16, groups: NARROW_GROUPS });
      net.initialize(0);
      tf.tidy(() => {
        const feats = net.forward(tensor([1, h, w, 3], 5) as tf.Tensor4D, { training: false, seed: 0 });
        // stem /2 (no max pool), then stage 1 strides: /4
        const s = [[down(down(h)), down(down(w))]];
        for (let i = 1; i < 4; i++) {
          const strided = (os === 8 && i >= 2) || (os === 16 && i === 3) ? s[i - 1] : [down(s[i - 1][0]), down(s[i - 1][1])];
          s.push(strided);
        }
        feats.forEach((f, i) => assert.deepEqual(f.shape, [1, s[i][0], s[i][1], 64 * 2 ** i], `stage ${i + 1}`));
      });
      net.dispose();
    });
  }
});

describe('PyConvSegNet', () => {
  test('iduta\'s checkpoint keys map one to one onto the model built from its widths, shapes transposed', async () => {
    await loadBackend('cpu');
    // Built without initialize(): the names and shapes are what is checked, and zeros cost no time.
    const decodeHead = new PyConvHead({
      inChannels: 2048, channels: 256, numClasses: 150, inIndex: 3, dropout: 0.1, alignCorners: true, syncBN: false,
    });
    const auxiliaryHead = new FCNHead({
      inChannels: 1024, channels: 256, numClasses: 150, inIndex: 2, dropout: 0.1, alignCorners: true, syncBN: false,
    });
    const model = new EncoderDecoder({
      backbone: new PyConvResNet({ depth: 50, baseChannels: 64 }), decodeHead, auxiliaryHead, alignCorners: true,
    });
    const ours = new Map([...model.namedParameters(), ...model.namedBuffers()].map(([k, v]) => [k, v.shape]));
    const lines = readFileSync(join(__dirname, '../../test/fixtures/pyconvsegnet-r50-keys.txt'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 399);
    const seen = new Set<string>();
    for (const line of lines) {
      const [key, shape] = line.split(' ');
      const mapped = pyconvsegnetKey(key);
      if (mapped === null) {
        assert.ok(key.endsWith('num_batches_tracked'), `${key} dropped`);
        continue;
      }
      const torchShape = shape.split('x').map(Number);
      const expected = torchShape.length === 4 ? [torchShape[2], torchShape[3], torchShape[1], torchShape[0]] : torchShape;
      assert.deepEqual(ours.get(mapped), expected, `${key} -> ${mapped}`);
      seen.add(mapped);
    }
    assert.deepEqual([...ours.keys()].filter((k) => !seen.has(k)), [], 'every segdist tensor has an iduta key');
    assert.equal(model.numParameters(), 33_688_236); // iduta's PyConvSegNet-50, 150 classes
    model.dispose();
  });

  test('pyconvsegnetKey: prefixes; counters and other architectures\' keys map to nothing', () => {
    assert.equal(pyconvsegnetKey('layer0.0.weight'), 'backbone.conv1.weight');
    assert.equal(pyconvsegnetKey('layer0.1.running_var'), 'backbone.bn1.running_var');
    assert.equal(pyconvsegnetKey('layer1.0.conv2.conv2_4.weight'), 'backbone.layer1.0.conv2.conv2_4.weight');
    assert.equal(pyconvsegnetKey('layer4.0.downsample.2.bias'), 'backbone.layer4.0.downsample.2.bias');
    assert.equal(pyconvsegnetKey('pyconvhead.global_context.features.4.conv2_3.weight'),
      'decode_head.global_context.features.4.conv2_3.weight');
    assert.equal(pyconvsegnetKey('pyconvhead.merge_context.features.1.running_mean'), 'decode_head.merge_context.features.1.running_mean');
    assert.equal(pyconvsegnetKey('cls.1.bias'), 'decode_head.conv_seg.bias');
    assert.equal(pyconvsegnetKey('aux.0.weight'), 'auxiliary_head.convs.0.conv.weight');
    assert.equal(pyconvsegnetKey('aux.1.weight'), 'auxiliary_head.convs.0.bn.weight');
    assert.equal(pyconvsegnetKey('aux.4.weight'), 'auxiliary_head.conv_seg.weight');
    assert.equal(pyconvsegnetKey('layer2.0.bn1.num_batches_tracked'), null);
    assert.equal(pyconvsegnetKey('ppm.features.0.1.weight'), null);
  });

  test('the torchvision scheme maps an ImageNet PyConvResNet checkpoint (iduta/pyconv) onto backbone.*, its fc left out', async () => {
    await loadBackend('cpu');
    const net = new PyConvResNet({ depth: 50, baseChannels: 16, groups: NARROW_GROUPS });
    const own = [...net.namedParameters(), ...net.namedBuffers()].map(([k]) => k);
    // iduta/pyconv's state_dict is the backbone's own names plus fc (and BN counters, which the
    // importer drops before any scheme sees them)
    const checkpoint = [...own, 'fc.weight', 'fc.bias'];
    const mapped = checkpoint.map(torchvisionKey);
    assert.deepEqual(mapped.filter((k) => k !== null), own.map((k) => `backbone.${k}`));
    assert.equal(mapped.filter((k) => k === null).length, 2); // fc
    net.dispose();
  });

  for (const os of [8, 16] as const) {
    test(`OS${os}: logits at the input size, aux only in training`, async () => {
      await loadBackend('cpu');
      const model = buildModel(config({ os }), 5, 1);
      tf.tidy(() => {
        const x = tensor([2, 33, 41, 3], 2) as tf.Tensor4D;
        const { out, aux } = model.forward(x, { training: false, seed: 0 });
        assert.deepEqual(out.shape, [2, 33, 41, 5]);
        assert.equal(aux, undefined);
        const train = model.forward(x, { training: true, seed: 0 });
        assert.deepEqual(train.aux!.shape, [2, 33, 41, 5]);
      });
      const names = model.namedParameters().map(([k]) => k);
      for (const k of ['decode_head.local_context.layers.3.conv2_4.weight', 'decode_head.global_context.features.1.weight',
        'decode_head.merge_context.features.0.weight', 'decode_head.conv_seg.bias', 'auxiliary_head.convs.0.conv.weight']) {
        assert.ok(names.includes(k), k);
      }
      // branches 2 x channels (32), local reduction = backbone width 512 / 4, merge 64 -> channels
      const p = new Map(model.namedParameters().map(([k, v]) => [k, v.shape]));
      assert.deepEqual(p.get('decode_head.local_context.layers.0.weight'), [1, 1, 512, 128]);
      assert.deepEqual(p.get('decode_head.local_context.layers.6.weight'), [1, 1, 128, 32]);
      assert.deepEqual(p.get('decode_head.global_context.features.4.conv2_4.weight'), [9, 9, 4, 8]);
      assert.deepEqual(p.get('decode_head.merge_context.features.0.weight'), [3, 3, 64, 16]);
      model.dispose();
    });
  }

  test('norm syncbn reaches every BN of the backbone and both heads', async () => {
    await loadBackend('cpu');
    for (const norm of ['bn', 'syncbn'] as const) {
      const model = buildModel({ ...config({ os: 16 }), norm }, 3, 0);
      const bns = model.namedModules().filter(([, m]) => m instanceof BatchNorm2d) as [string, BatchNorm2d][];
      assert.ok(bns.some(([n]) => n.startsWith('decode_head.global_context')) && bns.some(([n]) => n.startsWith('auxiliary_head')));
      assert.deepEqual(bns.filter(([, m]) => m.sync !== (norm === 'syncbn')).map(([n]) => n), [], norm);
      model.dispose();
    }
  });

  test('training on wasm: every parameter gets a finite gradient, and 3 steps leak no tensors', async () => {
    await loadBackend('wasm');
    const model = buildModel(config({ os: 8 }), 4, 3);
    const x = tensor([2, 25, 33, 3], 4) as tf.Tensor4D;
    const target = tensor([2, 25, 33, 4], 5);
    trainThreeSteps(model, x, target, (name, v, g) => {
      // every conv weight, grouped levels included, receives signal (BN biases before a ReLU may not)
      if (name.endsWith('.weight') && v.rank === 4) assert.ok(g.dataSync().some((e) => e !== 0), `zero gradient for ${name}`);
    });
    tf.dispose([x, target]);
    model.dispose();
  });
});

describe('PyConvSegNet config errors', () => {
  const base = ['model.backbone.type=pyconvresnet', 'model.head.type=pyconvseg'];
  test('a depth pyconvresnet lacks names model.backbone.depth and the valid depths', () => {
    assert.throws(() => resolveConfig({ overrides: [...base, 'model.backbone.depth=18'] }),
      (e: Error) => e instanceof ConfigError && /^model\.backbone\.depth: 18 is not a depth of pyconvresnet; valid: 50, 101, 152$/.test(e.message));
    assert.throws(() => buildModel({ ...config(), backbone: { ...config().backbone, depth: 34 } }, 3, 0),
      /model\.backbone\.depth: 34 is not a depth of pyconvresnet; valid: 50, 101, 152/);
    // the same depth is fine for resnet
    assert.equal(resolveConfig({ overrides: ['model.backbone.depth=18'] }).model.backbone.depth, 18);
  });

  test('a deep stem, and groups that do not divide the widths, name their key', () => {
    const ok = [...base, 'model.backbone.depth=50', 'model.backbone.base_channels=64'];
    assert.equal(resolveConfig({ overrides: ok }).model.backbone.pyconv_groups?.[0][3], PYCONV_GROUPS[0][3]);
    assert.throws(() => resolveConfig({ overrides: [...ok, 'model.backbone.stem=v1c'] }), /model\.backbone\.stem: pyconvresnet has only its 7x7 stem/);
    assert.throws(() => resolveConfig({ overrides: [...base, 'model.backbone.depth=50', 'model.backbone.base_channels=32'] }),
      /model\.backbone\.pyconv_groups: stage 1 level 4: groups 16 must divide its 32 input and 8 output channels/);
    assert.throws(() => resolveConfig({ overrides: [...ok, 'model.backbone.pyconv_groups=[[1,4,8,16],[1,4],[1,4],[1]]'] }),
      /model\.backbone\.pyconv_groups: stage 2 has 3 pyramid level\(s\), got groups \[1,4\]/);
    assert.throws(() => buildModel({ ...config(), head: { ...config().head, pyconv_groups: [1, 4, 8, 16] } }, 3, 0),
      /Error in PyConvHead: pyconv_groups \[1,4,8,16\] must be 4 groups dividing each pyramid level's channels: the local branch's levels have 32 \(backbone width 512 \/ 16\), the global branch's 8/);
    // the head's groups are checked against the widths at config time too: base 16 -> width 512
    assert.throws(() => resolveConfig({ overrides: [...ok, 'model.head.channels=8'] }),
      /model\.head\.pyconv_groups: \[1,4,8,16\] must be 4 groups .* the global branch's 4 \(2 x head channels 8 \/ 4\)/);
    assert.equal(resolveConfig({ overrides: [...ok, 'model.head.channels=32'] }).model.head.channels, 32);
  });

  test('unknown types list the valid ones', () => {
    assert.throws(() => buildModel({ ...config(), backbone: { ...config().backbone, type: 'pyconvnet' as 'resnet' } }, 3, 0),
      /Unknown backbone type 'pyconvnet'; valid: resnet, pyconvresnet/);
    assert.throws(() => resolveConfig({ overrides: ['model.head.type=pyconv'] }), /model\.head\.type: 'pyconv' is not one of psp, pyconvseg/);
  });
});
