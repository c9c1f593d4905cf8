// ResNet backbone: mmseg's parameter names for the v1b/v1c/v1d stems, torchvision's parameter
// counts, stage shapes for output stride 8 and 16 on odd input sizes, Kaiming init.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ResNet, type ResNetDepth, type ResNetStem } from '../src/models/resnet';
import { Conv2d } from '../src/models/conv2d';

before(async () => {
  await tf.setBackend('cpu');
});

/** floor((L + 2p - k) / s) + 1 */
const down = (l: number, k: number, s: number, p: number) => Math.floor((l + 2 * p - k) / s) + 1;

function names(depth: ResNetDepth, stem: ResNetStem, base = 8): { params: string[]; buffers: string[] } {
  const net = new ResNet({ depth, stem, baseChannels: base });
  const out = { params: net.namedParameters().map(([n]) => n), buffers: net.namedBuffers().map(([n]) => n) };
  net.dispose();
  return out;
}

describe('ResNet parameter names (mmseg keys, relative to backbone.)', () => {
  test('v1b stem is conv1/bn1; Bottleneck blocks have conv1-3, bn1-3 and downsample.0/.1', () => {
    const { params, buffers } = names(50, 'v1b');
    for (const k of [
      'conv1.weight', 'bn1.weight', 'bn1.bias',
      'layer1.0.conv1.weight', 'layer1.0.conv2.weight', 'layer1.0.conv3.weight', 'layer1.0.bn3.bias',
      'layer1.0.downsample.0.weight', 'layer1.0.downsample.1.weight', 'layer1.0.downsample.1.bias',
      'layer3.5.conv2.weight', 'layer4.2.bn3.weight',
    ]) assert.ok(params.includes(k), k);
    for (const k of ['bn1.running_mean', 'bn1.running_var', 'layer1.0.downsample.1.running_mean']) {
      assert.ok(buffers.includes(k), k);
    }
    assert.ok(!params.some((k) => k.startsWith('stem.')));
    assert.ok(![...params, ...buffers].some((k) => k.includes('num_batches_tracked')));
    assert.ok(!params.some((k) => k.includes('layer1.1.downsample')));
    // 1 stem conv + 16 blocks x 3 convs + 4 shortcut convs, and a BN for each conv
    assert.equal(params.filter((k) => /conv\d\.weight$|downsample\.0\.weight$/.test(k)).length, 53);
    assert.equal(buffers.length, 2 * 53);
  });

  test('ResNet-18 layer1 has no shortcut conv (width unchanged); layer2-4 do', () => {
    const { params } = names(18, 'v1b');
    assert.ok(!params.some((k) => k.startsWith('layer1.0.downsample')));
    for (const l of [2, 3, 4]) assert.ok(params.includes(`layer${l}.0.downsample.0.weight`));
    assert.ok(!params.some((k) => k.includes('conv3')));
    assert.equal(params.filter((k) => k.endsWith('.weight') && !/bn\d|downsample\.1/.test(k)).length, 20);
  });

  test('v1c deep stem is stem.0/1 (3->32), stem.3/4, stem.6/7 with base 64 widths', () => {
    const net = new ResNet({ depth: 18, stem: 'v1c', baseChannels: 64 });
    const p = new Map(net.namedParameters());
    assert.deepEqual(p.get('stem.0.weight')!.shape, [3, 3, 3, 32]);
    assert.deepEqual(p.get('stem.1.weight')!.shape, [32]);
    assert.deepEqual(p.get('stem.3.weight')!.shape, [3, 3, 32, 32]);
    assert.deepEqual(p.get('stem.6.weight')!.shape, [3, 3, 32, 64]);
    assert.deepEqual(p.get('stem.7.bias')!.shape, [64]);
    assert.ok(!p.has('conv1.weight'));
    assert.ok(net.namedBuffers().some(([n]) => n === 'stem.4.running_var'));
    net.dispose();
  });

  test('v1d shortcut is downsample.0 avg pool, .1 conv (stride 1), .2 bn', () => {
    const { params, buffers } = names(50, 'v1d');
    assert.ok(params.includes('layer2.0.downsample.1.weight'));
    assert.ok(params.includes('layer2.0.downsample.2.weight'));
    assert.ok(buffers.includes('layer2.0.downsample.2.running_mean'));
    assert.ok(!params.includes('layer2.0.downsample.0.weight'));
  });

  test('base 64 parameter counts equal torchvision ResNet-18/50 without the fc layer', () => {
    const r18 = new ResNet({ depth: 18, baseChannels: 64 });
    assert.equal(r18.numParameters(), 11_689_512 - 513_000);
    assert.deepEqual(r18.outChannels, [64, 128, 256, 512]);
    r18.dispose();
    const r50 = new ResNet({ depth: 50, baseChannels: 64 });
    assert.equal(r50.numParameters(), 25_557_032 - 2_049_000);
    assert.deepEqual(r50.outChannels, [256, 512, 1024, 2048]);
    const p = new Map(r50.namedParameters());
    assert.deepEqual(p.get('layer1.0.conv2.weight')!.shape, [3, 3, 64, 64]); // HWIO
    assert.deepEqual(p.get('layer4.0.downsample.0.weight')!.shape, [1, 1, 1024, 2048]);
    r50.dispose();
  });
});

describe('ResNet stage shapes', () => {
  const cases: { depth: ResNetDepth; stem: ResNetStem; os: 8 | 16; h: number; w: number }[] = [
    { depth: 18, stem: 'v1b', os: 8, h: 35, w: 29 },
    { depth: 18, stem: 'v1c', os: 16, h: 33, w: 33 },
    { depth: 50, stem: 'v1b', os: 16, h: 35, w: 29 },
    { depth: 50, stem: 'v1d', os: 8, h: 37, w: 31 },
  ];
  for (const { depth, stem, os, h, w } of cases) {
    test(`R${depth} ${stem} OS${os} on ${h}x${w}`, () => {
      const net = new ResNet({ depth, stem, outputStride: os, baseChannels: 8 });
      net.initialize(0);
      tf.tidy(() => {
        const feats = net.forward(tf.zeros([1, h, w, 3]) as tf.Tensor4D, { training: false, seed: 0 });
        // stem conv (7x7/2 p3, or 3x3/2 p1: same size), then 3x3/2 p1 max pool
        const s4 = [down(down(h, 3, 2, 1), 3, 2, 1), down(down(w, 3, 2, 1), 3, 2, 1)];
        const s8 = [down(s4[0], 3, 2, 1), down(s4[1], 3, 2, 1)];
        const s16 = [down(s8[0], 3, 2, 1), down(s8[1], 3, 2, 1)];
        const spatial = os === 8 ? [s4, s8, s8, s8] : [s4, s8, s16, s16];
        const exp = depth === 18 ? 1 : 4;
        assert.equal(feats.length, 4);
        feats.forEach((f, i) => {
          assert.deepEqual(f.shape, [1, spatial[i][0], spatial[i][1], 8 * 2 ** i * exp], `stage ${i + 1}`);
        });
        assert.deepEqual(net.outChannels, [8, 16, 32, 64].map((c) => c * exp));
      });
      net.dispose();
    });
  }
});

describe('ResNet dilation', () => {
  function dilations(opts: { depth: ResNetDepth; os: 8 | 16; contract?: boolean }): Map<string, number> {
    const net = new ResNet({ depth: opts.depth, outputStride: opts.os, baseChannels: 8, contractDilation: opts.contract });
    const out = new Map<string, number>();
    for (const [name, m] of net.namedModules()) {
      if (m instanceof Conv2d && m.kernelSize === 3) out.set(name, m.geometry.dilation);
    }
    net.dispose();
    return out;
  }

  test('OS8: every block of stages 3/4 at dilation 2/4 by default; BasicBlock conv2 stays undilated', () => {
    const d = dilations({ depth: 18, os: 8 });
    assert.deepEqual([d.get('layer2.0.conv1'), d.get('layer3.0.conv1'), d.get('layer3.1.conv1'), d.get('layer4.0.conv1'),
      d.get('layer4.1.conv1'), d.get('layer4.1.conv2')], [1, 2, 2, 4, 4, 1]);
  });

  test('contractDilation halves the first block\'s dilation (mmseg contract_dilation=True)', () => {
    const d = dilations({ depth: 50, os: 8, contract: true });
    assert.deepEqual([d.get('layer3.0.conv2'), d.get('layer3.1.conv2'), d.get('layer4.0.conv2'), d.get('layer4.2.conv2')],
      [1, 2, 2, 4]);
    const d16 = dilations({ depth: 50, os: 16, contract: true });
    assert.deepEqual([d16.get('layer3.0.conv2'), d16.get('layer4.0.conv2'), d16.get('layer4.1.conv2')], [1, 1, 2]);
  });
});

describe('ResNet init', () => {
  test('convs are Kaiming normal (fan_out, relu); BN weight 1, bias 0, running var 1', () => {
    const net = new ResNet({ depth: 18, baseChannels: 64 });
    net.initialize(3);
    const p = new Map(net.namedParameters());
    const w = p.get('layer4.1.conv2.weight')!.dataSync(); // 3x3x512x512, fan_out 4608
    let s = 0;
    let s2 = 0;
    for (const v of w) { s += v; s2 += v * v; }
    const mean = s / w.length;
    const std = Math.sqrt(s2 / w.length - mean * mean);
    const expected = Math.sqrt(2 / (9 * 512));
    assert.ok(Math.abs(std / expected - 1) < 0.01, `std ${std} vs ${expected}`);
    assert.ok(Math.abs(mean) < 0.01 * expected);
    assert.ok(p.get('layer2.0.bn1.weight')!.dataSync().every((v) => v === 1));
    assert.ok(p.get('layer2.0.bn1.bias')!.dataSync().every((v) => v === 0));
    const b = new Map(net.namedBuffers());
    assert.ok(b.get('layer2.0.bn1.running_var')!.dataSync().every((v) => v === 1));
    assert.ok(b.get('layer2.0.bn1.running_mean')!.dataSync().every((v) => v === 0));
    net.dispose();
  });

  test('zeroInitResidual starts each block\'s last BN at gamma 0 (mmseg\'s option)', () => {
    const net = new ResNet({ depth: 50, baseChannels: 8, zeroInitResidual: true });
    net.initialize(0);
    const p = new Map(net.namedParameters());
    assert.ok(p.get('layer1.0.bn3.weight')!.dataSync().every((v) => v === 0));
    assert.ok(p.get('layer1.0.bn2.weight')!.dataSync().every((v) => v === 1));
    assert.ok(p.get('layer1.0.downsample.1.weight')!.dataSync().every((v) => v === 1));
    net.dispose();
  });

  test('rejects an unknown depth, stem or output stride, naming the valid ones', () => {
    assert.throws(() => new ResNet({ depth: 26 as ResNetDepth }), /18, 34, 50, 101, 152/);
    assert.throws(() => new ResNet({ depth: 18, stem: 'v1e' as ResNetStem }), /v1b, v1c, v1d/);
    assert.throws(() => new ResNet({ depth: 18, outputStride: 4 as 8 }), /8, 16, 32/);
  });
});
