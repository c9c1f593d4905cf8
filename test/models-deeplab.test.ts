// DeepLabV3+ (and the plain ASPP head) as built from a ModelConfig: output shapes, mmseg state_dict
// keys, dilations by output stride or from the config, ResNet multi-grid, a training step's gradients
// and memory on cpu and wasm, config errors.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { buildModel, HEAD_TYPES, type ModelConfig } from '../src/models/build-model';
import { ResNet } from '../src/models/resnet';
import type { Bottleneck } from '../src/models/bottleneck';
import type { BasicBlock } from '../src/models/basic-block';
import { DeepLabV3PlusHead } from '../src/models/deeplabv3plus-head';
import { ASPPHead } from '../src/models/aspp-head';
import { DepthwiseSeparableConvModule } from '../src/models/depthwise-separable-conv-module';
import { ConvModule } from '../src/models/conv-module';
import { loadBackend } from '../src/backend/load-backend';
import { resolveConfig } from '../src/config/load-config';
import { ConfigError } from '../src/config/config-error';
import { randomData } from './helpers/compare';
import { trainThreeSteps } from './helpers/train-steps';
import type { Conv2d } from '../src/models/conv2d';

function config(over: {
  depth?: 18 | 50; os?: 8 | 16; head?: 'deeplabv3plus' | 'aspp'; dilations?: number[] | null; c1?: number;
  multiGrid?: number[] | null; aux?: boolean;
} = {}): ModelConfig {
  return {
    norm: 'bn',
    align_corners: false,
    backbone: {
      type: 'resnet', depth: over.depth ?? 18, stem: 'v1c', output_stride: over.os ?? 8, base_channels: 8,
      contract_dilation: true, multi_grid: over.multiGrid ?? null,
    },
    head: {
      type: over.head ?? 'deeplabv3plus', channels: 8, dropout: 0.1, pool_scales: [1, 2, 3, 6],
      dilations: over.dilations ?? null, c1_channels: over.c1 ?? 6, attention: 'none',
    },
    aux: { enabled: over.aux ?? false, channels: 8, weight: 0.4, dropout: 0.1 },
  };
}

const input = (shape: [number, number, number, number], seed: number): tf.Tensor4D =>
  tf.tensor4d(randomData(shape.reduce((a, b) => a * b, 1), seed), shape);

/** The dilation of each atrous ASPP branch's depthwise conv (the 1x1 branch has none). */
function branchDilations(head: ASPPHead): number[] {
  return head.aspp_modules.items.map((b) => b instanceof DepthwiseSeparableConvModule
    ? b.depthwise_conv.conv.geometry.dilation
    : (b as ConvModule).conv.geometry.dilation);
}

/** The dilation of each block's dilated 3x3 conv in a stage. */
function stageDilations(net: ResNet, stage: number): number[] {
  const layer = net.namedChildren().find(([n]) => n === `layer${stage}`)![1];
  return layer.namedChildren().map(([, b]) => 'conv3' in b
    ? ((b as Bottleneck).conv2 as Conv2d).geometry.dilation
    : (b as BasicBlock).conv1.geometry.dilation);
}

before(async () => {
  await tf.setBackend('cpu');
});

describe('DeepLabV3+ output shapes', () => {
  const cases = [
    { depth: 18 as const, os: 8 as const, h: 33, w: 45 },
    { depth: 50 as const, os: 16 as const, h: 37, w: 29 },
  ];
  for (const { depth, os, h, w } of cases) {
    for (const head of ['deeplabv3plus', 'aspp'] as const) {
      test(`${head} on R${depth} OS${os}, ${h}x${w}: logits at the input size, eval and train`, () => {
        const model = buildModel(config({ depth, os, head, aux: true }), 5, 1);
        tf.tidy(() => {
          const x = input([2, h, w, 3], 1);
          assert.deepEqual(model.forward(x, { training: false, seed: 0 }).out.shape, [2, h, w, 5]);
          const { out, aux } = model.forward(x, { training: true, seed: 0 });
          assert.deepEqual(out.shape, [2, h, w, 5]);
          assert.deepEqual(aux?.shape, [2, h, w, 5]);
        });
        model.dispose();
      });
    }
  }

  test('the DeepLabV3+ head classifies at stage 1\'s resolution (stride 4), ASPP alone at the last stage\'s', () => {
    for (const [head, stride] of [['deeplabv3plus', 4], ['aspp', 8]] as const) {
      const model = buildModel(config({ head }), 3, 0);
      tf.tidy(() => {
        const feats = model.backbone.forward(input([1, 64, 48, 3], 2), { training: false, seed: 0 });
        assert.deepEqual(model.decode_head.forward(feats, { training: false, seed: 0 }).shape, [1, 64 / stride, 48 / stride, 3]);
      });
      model.dispose();
    }
  });
});

describe('DeepLabV3+ state_dict keys', () => {
  test('follow mmseg\'s DepthwiseSeparableASPPHead: image_pool, aspp_modules, bottleneck, c1_bottleneck, sep_bottleneck', () => {
    const model = buildModel(config({ depth: 50, c1: 48 }), 19, 0);
    const p = new Map(model.namedParameters().map(([n, v]) => [n, v.shape]));
    const b = new Set(model.namedBuffers().map(([n]) => n));
    const cin = 256; // stage 4 of ResNet-50 at base 8
    const expectShapes: [string, number[]][] = [
      ['decode_head.image_pool.1.conv.weight', [1, 1, cin, 8]],
      ['decode_head.image_pool.1.bn.weight', [8]],
      ['decode_head.aspp_modules.0.conv.weight', [1, 1, cin, 8]],
      ['decode_head.aspp_modules.1.depthwise_conv.conv.weight', [3, 3, 1, cin]],
      ['decode_head.aspp_modules.1.depthwise_conv.bn.weight', [cin]],
      ['decode_head.aspp_modules.1.pointwise_conv.conv.weight', [1, 1, cin, 8]],
      ['decode_head.aspp_modules.3.pointwise_conv.bn.bias', [8]],
      ['decode_head.bottleneck.depthwise_conv.conv.weight', [3, 3, 1, 5 * 8]],
      ['decode_head.bottleneck.pointwise_conv.conv.weight', [1, 1, 5 * 8, 8]],
      ['decode_head.c1_bottleneck.conv.weight', [1, 1, 32, 48]],
      ['decode_head.c1_bottleneck.bn.weight', [48]],
      ['decode_head.sep_bottleneck.0.depthwise_conv.conv.weight', [3, 3, 1, 8 + 48]],
      ['decode_head.sep_bottleneck.0.pointwise_conv.conv.weight', [1, 1, 8 + 48, 8]],
      ['decode_head.sep_bottleneck.1.depthwise_conv.conv.weight', [3, 3, 1, 8]],
      ['decode_head.sep_bottleneck.1.pointwise_conv.bn.weight', [8]],
      ['decode_head.conv_seg.weight', [1, 1, 8, 19]],
      ['decode_head.conv_seg.bias', [19]],
    ];
    for (const [name, shape] of expectShapes) assert.deepEqual(p.get(name), shape, name);
    for (const name of ['decode_head.image_pool.1.bn.running_mean', 'decode_head.aspp_modules.2.depthwise_conv.bn.running_var',
      'decode_head.aspp_modules.2.pointwise_conv.bn.running_mean', 'decode_head.c1_bottleneck.bn.running_var',
      'decode_head.sep_bottleneck.1.depthwise_conv.bn.running_mean']) assert.ok(b.has(name), name);
    // convs before BN carry no bias; no attention unless asked for
    assert.ok(![...p.keys()].some((k) => /depthwise_conv\.conv\.bias|pointwise_conv\.conv\.bias|attention/.test(k)));
    assert.ok(!p.has('decode_head.aspp_modules.4.conv.weight'));
    model.dispose();
  });

  test('the plain ASPP head (DeepLabV3) has dense atrous branches and a dense bottleneck', () => {
    const model = buildModel(config({ head: 'aspp' }), 4, 0);
    const p = new Map(model.namedParameters().map(([n, v]) => [n, v.shape]));
    assert.deepEqual(p.get('decode_head.aspp_modules.2.conv.weight'), [3, 3, 64, 8]);
    assert.deepEqual(p.get('decode_head.bottleneck.conv.weight'), [3, 3, 5 * 8, 8]);
    assert.ok(![...p.keys()].some((k) => /c1_bottleneck|sep_bottleneck|depthwise/.test(k)));
    model.dispose();
  });
});

describe('ASPP dilations', () => {
  test('default by output stride: (1, 12, 24, 36) at 8, (1, 6, 12, 18) at 16; a configured list wins', () => {
    for (const [os, expected] of [[8, [1, 12, 24, 36]], [16, [1, 6, 12, 18]]] as const) {
      for (const head of ['deeplabv3plus', 'aspp'] as const) {
        const model = buildModel(config({ os, head }), 3, 0);
        assert.deepEqual(branchDilations(model.decode_head as ASPPHead), expected, `${head} OS${os}`);
        model.dispose();
      }
    }
    const custom = buildModel(config({ dilations: [1, 2, 3, 4, 5] }), 3, 0);
    const head = custom.decode_head as DeepLabV3PlusHead;
    assert.deepEqual(branchDilations(head), [1, 2, 3, 4, 5]);
    // the bottleneck widens with the branch count: (5 branches + image pool) x channels
    assert.deepEqual(custom.namedParameters().find(([n]) => n === 'decode_head.bottleneck.depthwise_conv.conv.weight')![1].shape, [3, 3, 1, 6 * 8]);
    custom.dispose();
  });

  test('non-positive or fractional dilations are refused, naming them', () => {
    assert.throws(() => buildModel(config({ dilations: [1, 0, 12] }), 3, 0), /dilations must be positive integers, got \[1,0,12\]/);
    assert.throws(() => buildModel(config({ dilations: [] }), 3, 0), /dilations must be positive integers/);
  });
});

describe('ResNet multi-grid', () => {
  test('layer4 block i is dilated by the stage\'s dilation times multi_grid[i], contract_dilation ignored there', () => {
    const at = (os: 8 | 16, multiGrid?: number[], contractDilation = true) =>
      new ResNet({ depth: 50, stem: 'v1c', outputStride: os, baseChannels: 4, contractDilation, multiGrid });
    const cases: [ResNet, number[], number[]][] = [
      [at(16, [1, 2, 4]), [2, 4, 8], [1, 1, 1, 1, 1, 1]],
      [at(8, [1, 2, 4]), [4, 8, 16], [1, 2, 2, 2, 2, 2]], // stage 3 keeps contract_dilation
      [at(8, [1, 2, 4], false), [4, 8, 16], [2, 2, 2, 2, 2, 2]],
      [at(16), [1, 2, 2], [1, 1, 1, 1, 1, 1]],
      [at(16, undefined, false), [2, 2, 2], [1, 1, 1, 1, 1, 1]],
    ];
    for (const [net, layer4, layer3] of cases) {
      assert.deepEqual(stageDilations(net, 4), layer4);
      assert.deepEqual(stageDilations(net, 3), layer3);
      net.dispose();
    }
    const r18 = new ResNet({ depth: 18, outputStride: 16, baseChannels: 4, multiGrid: [1, 3] });
    assert.deepEqual(stageDilations(r18, 4), [2, 6]);
    r18.dispose();
  });

  test('the list must have one positive integer per block of layer4; the error names the key', () => {
    assert.throws(() => buildModel(config({ depth: 50, multiGrid: [1, 2] }), 3, 0),
      /multi_grid \(model\.backbone\.multi_grid\) must give one positive integer per block of layer4 \(3 in ResNet-50\), got \[1,2\]/);
    assert.throws(() => buildModel(config({ depth: 18, multiGrid: [1, 2, 4] }), 3, 0), /\(2 in ResNet-18\), got \[1,2,4\]/);
    assert.throws(() => buildModel(config({ depth: 18, multiGrid: [1, 0] }), 3, 0), /got \[1,0\]/);
  });

  test('multi-grid changes the output, not the parameters', () => {
    const plain = buildModel(config({ depth: 50, os: 16 }), 3, 4);
    const grid = buildModel(config({ depth: 50, os: 16, multiGrid: [1, 2, 4] }), 3, 4);
    assert.deepEqual(grid.namedParameters().map(([n, v]) => [n, v.shape]), plain.namedParameters().map(([n, v]) => [n, v.shape]));
    tf.tidy(() => {
      const x = input([1, 65, 65, 3], 5);
      const a = plain.forward(x, { training: false, seed: 0 }).out;
      const b = grid.forward(x, { training: false, seed: 0 }).out;
      assert.ok(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] > 1e-6);
    });
    plain.dispose();
    grid.dispose();
  });
});

function trainingStep(backend: 'cpu' | 'wasm'): void {
  test(`${backend}: every parameter gets a finite gradient, the separable ASPP ones non-zero, and 3 steps leak nothing`, async () => {
    assert.equal(await loadBackend(backend), backend);
    // dilations that reach inside the 5x5 stage-4 map, so the atrous branches' taps all carry signal
    const model = buildModel(config({ os: 8, dilations: [1, 2, 3, 4], aux: true }), 4, 7);
    const x = input([2, 37, 37, 3], 3);
    const target = input([2, 37, 37, 4], 4);
    trainThreeSteps(model, x, target, (name, _v, g) => {
      if (/aspp_modules\.[1-3]\.depthwise_conv\.conv\.weight|sep_bottleneck\.0\.depthwise_conv\.conv\.weight/.test(name)) {
        // every tap of the atrous depthwise filters, the outer ones included
        const a = g.dataSync();
        const c = g.shape[3]!;
        for (let t = 0; t < 9; t++) {
          let s = 0;
          for (let ch = 0; ch < c; ch++) s += Math.abs(a[t * c + ch]);
          assert.ok(s > 0, `${name}: tap ${t} got no gradient`);
        }
      }
    });
    tf.dispose([x, target]);
    model.dispose();
  });
}

describe('DeepLabV3+ training step', () => {
  trainingStep('cpu');
  trainingStep('wasm');
});

describe('DeepLabV3+ config', () => {
  test('the schema knows the head types, dilations, c1_channels, multi_grid and attention, with errors naming the key', () => {
    assert.deepEqual(HEAD_TYPES, ['psp', 'pyconvseg', 'aspp', 'deeplabv3plus']);
    const cfg = resolveConfig({ overrides: ['model.head.type=deeplabv3plus', 'model.backbone.multi_grid=[1, 2]', 'model.head.dilations=[1, 6, 12, 18]'] });
    assert.equal(cfg.model.head.type, 'deeplabv3plus');
    assert.equal(cfg.model.head.c1_channels, 48);
    assert.equal(cfg.model.head.attention, 'none');
    assert.deepEqual(cfg.model.backbone.multi_grid, [1, 2]);
    const model = buildModel(cfg.model, 3, 0);
    assert.ok(model.decode_head instanceof DeepLabV3PlusHead);
    model.dispose();
    assert.equal(resolveConfig({}).model.backbone.multi_grid, null);
    assert.equal(resolveConfig({}).model.head.dilations, null);
    const bad: [string, RegExp][] = [
      ['model.head.type=deeplab', /model\.head\.type: 'deeplab' is not one of psp, pyconvseg, aspp, deeplabv3plus/],
      ['model.head.attention=self', /model\.head\.attention: 'self' is not one of none, dual/],
      ['model.backbone.multi_grid=[1, 0]', /model\.backbone\.multi_grid\[1\]: 0 is out of range \(minimum 1\)/],
      ['model.head.dilations=[1, 2.5]', /model\.head\.dilations\[1\]: expected an integer, got 2.5/],
      ['model.head.c1_channels=0', /model\.head\.c1_channels: 0 is out of range \(minimum 1\)/],
    ];
    for (const [override, re] of bad) {
      assert.throws(() => resolveConfig({ overrides: [override] }), (e: unknown) => e instanceof ConfigError && re.test((e as Error).message), override);
    }
  });
});
