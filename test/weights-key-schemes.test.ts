// Key schemes against the key + shape lists of real checkpoints (test/fixtures/weights, written by
// tools/make_weight_key_fixtures.py from torchvision and from semseg's PSPNet structure): every key
// lands on a segdist tensor of the same shape, or is reported. Models are built uninitialised: only
// names and shapes matter here.
import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { resolveConfig } from '../src/config/load-config';
import { buildModel } from '../src/models/build-model';
import { modelShapes, matchBestScheme } from '../src/weights/convert-weights';
import { KEY_SCHEMES, schemeNamed, stripWrapperPrefixes } from '../src/weights/key-schemes';
import { matchStateDict } from '../src/weights/match-state-dict';
import { segdistShapeOf, torchShapeOf, torchToSegdist } from '../src/weights/conv-layout';
import { toFloat32 } from '../src/weights/tensor-values';
import { hwioToOihw } from './helpers/torch-safetensors';
import { randomData } from './helpers/compare';

const FIXTURES = path.resolve(__dirname, '../../test/fixtures/weights');

function manifest(name: string): Map<string, { shape: number[] }> {
  const list = JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8')) as Array<[string, number[]]>;
  return new Map(list.map(([k, shape]) => [k, { shape }]));
}

function shapesFor(overrides: string[], numClasses = 21): Map<string, number[]> {
  const cfg = resolveConfig({ overrides });
  const model = buildModel(cfg.model, numClasses, 0, { initialize: false });
  const shapes = modelShapes(model);
  model.dispose();
  return shapes;
}

const FULL_WIDTH = ['model.backbone.base_channels=64', 'model.head.channels=512', 'model.aux.channels=256'];
const nbt = (m: Map<string, unknown>) => [...m.keys()].filter((k) => k.endsWith('num_batches_tracked')).length;

before(async () => {
  await tf.setBackend('cpu');
});

for (const depth of [18, 50]) {
  test(`torchvision resnet${depth}: every backbone tensor matches the V1b backbone, fc is unexpected`, () => {
    const stored = manifest(`torchvision-resnet${depth}.json`);
    // Narrow heads: they are not in the file anyway.
    const model = shapesFor([`model.backbone.depth=${depth}`, 'model.backbone.base_channels=64', 'model.head.channels=8', 'model.aux.channels=8']);
    const r = matchStateDict('tv.safetensors', stored, model, schemeNamed('torchvision'), 'pytorch');
    assert.deepEqual(r.mismatched, []);
    assert.deepEqual(r.unexpected.map((u) => u.key), ['fc.weight', 'fc.bias']);
    assert.equal(r.numBatchesTracked, nbt(stored));
    const backbone = [...model.keys()].filter((k) => k.startsWith('backbone.'));
    assert.deepEqual(r.matched.map((m) => m.target).sort(), backbone.sort());
    assert.ok(r.missing.every((k) => k.startsWith('decode_head.') || k.startsWith('auxiliary_head.')), r.missing.join(', '));
    assert.equal(r.matched.length + 2 + r.numBatchesTracked, stored.size);
    assert.equal(matchBestScheme('tv.safetensors', stored, model).scheme, 'torchvision');
  });
}

test('semseg PSPNet-50 maps one to one onto a V1c PSPNet with stem_channels 128', () => {
  const stored = manifest('semseg-pspnet50.json');
  const base = [...FULL_WIDTH, 'model.backbone.depth=50', 'model.backbone.stem=v1c', 'model.backbone.contract_dilation=false'];
  const model = shapesFor([...base, 'model.backbone.stem_channels=128']);
  const r = matchStateDict('semseg.safetensors', stored, model, schemeNamed('semseg'), 'pytorch');
  assert.deepEqual(r.mismatched, []);
  assert.deepEqual(r.unexpected, []);
  assert.deepEqual(r.missing, []);
  assert.equal(r.matched.length, model.size);
  assert.equal(r.numBatchesTracked, nbt(stored));
  const target = new Map(r.matched.map((m) => [m.key, m.target]));
  assert.equal(target.get('layer0.6.weight'), 'backbone.stem.6.weight');
  assert.equal(target.get('layer0.7.running_var'), 'backbone.stem.7.running_var');
  assert.equal(target.get('ppm.features.3.1.weight'), 'decode_head.psp_modules.3.1.conv.weight');
  assert.equal(target.get('ppm.features.0.2.running_mean'), 'decode_head.psp_modules.0.1.bn.running_mean');
  assert.equal(target.get('cls.0.weight'), 'decode_head.bottleneck.conv.weight');
  assert.equal(target.get('cls.1.bias'), 'decode_head.bottleneck.bn.bias');
  assert.equal(target.get('cls.4.bias'), 'decode_head.conv_seg.bias');
  assert.equal(target.get('aux.0.weight'), 'auxiliary_head.convs.0.conv.weight');
  assert.equal(target.get('aux.1.weight'), 'auxiliary_head.convs.0.bn.weight');
  assert.equal(target.get('aux.4.weight'), 'auxiliary_head.conv_seg.weight');
  assert.equal(matchBestScheme('semseg.safetensors', stored, model).scheme, 'semseg');

  // mmseg's default stem (32, 32, 64) is not semseg's (64, 64, 128): the report names the differences.
  const narrow = matchStateDict('semseg.safetensors', stored, shapesFor(base), schemeNamed('semseg'), 'pytorch');
  const bad = new Map(narrow.mismatched.map((m) => [m.key, m]));
  assert.deepEqual(bad.get('layer0.0.weight')?.checkpoint, [64, 3, 3, 3]);
  assert.deepEqual(bad.get('layer0.0.weight')?.model, [32, 3, 3, 3]);
  assert.deepEqual(bad.get('layer1.0.conv1.weight')?.model, [64, 64, 1, 1]);
  assert.ok(!bad.has('layer2.0.conv1.weight'));
});

test('mmseg names map to themselves, and auto picks mmseg for them', () => {
  const model = shapesFor([]);
  const stored = new Map([...model].map(([k, s]) => [`module.${k}`, { shape: torchShapeOf(s) }]));
  stored.set('module.decode_head.conv_seg.num_batches_tracked', { shape: [] });
  const r = matchBestScheme('mmseg.safetensors', stored, model);
  assert.equal(r.scheme, 'mmseg');
  assert.equal(r.matched.length, model.size);
  assert.deepEqual([r.missing, r.unexpected, r.mismatched], [[], [], []]);
  assert.equal(r.numBatchesTracked, 1);
  assert.deepEqual(r.tried?.map((t) => t.scheme), KEY_SCHEMES.map((s) => s.name));
});

test('wrapper prefixes: state_dict. once, module. any number of times', () => {
  assert.equal(stripWrapperPrefixes('module.backbone.conv1.weight'), 'backbone.conv1.weight');
  assert.equal(stripWrapperPrefixes('state_dict.module.layer0.0.weight'), 'layer0.0.weight');
  assert.equal(stripWrapperPrefixes('module.module.cls.4.bias'), 'cls.4.bias');
  assert.equal(stripWrapperPrefixes('backbone.module.x'), 'backbone.module.x');
  assert.equal(schemeNamed('semseg').toSegdist('layer0.2.weight'), null); // a ReLU slot holds nothing
  assert.equal(schemeNamed('torchvision').toSegdist('fc.weight'), null);
  assert.throws(() => schemeNamed('detectron'), /unknown key scheme 'detectron'; known: auto, mmseg/);
});

test('OIHW -> HWIO, also for a depthwise conv ([out, in/groups = 1, kh, kw])', () => {
  for (const hwio of [[3, 3, 4, 5], [3, 3, 1, 6], [1, 1, 7, 2]]) {
    const data = randomData(hwio.reduce((a, b) => a * b, 1), 11);
    const oihw = hwioToOihw(data, hwio);
    assert.deepEqual(segdistShapeOf(oihw.shape), hwio);
    assert.deepEqual(torchShapeOf(hwio), oihw.shape);
    assert.deepEqual(torchToSegdist(oihw.data, oihw.shape), data);
  }
  const bias = randomData(5, 3);
  assert.equal(torchToSegdist(bias, [5]), bias);
});

test('dtypes widen to float32 exactly; a non-weight dtype is refused naming the tensor', () => {
  const raw = (dtype: string, bytes: Buffer, shape: number[]) => ({ dtype, shape, bytes });
  const f16 = Buffer.alloc(6);
  [0x3c00, 0xc200, 0x0001].forEach((h, i) => f16.writeUInt16LE(h, 2 * i)); // 1, -3, smallest subnormal
  assert.deepEqual([...toFloat32(raw('F16', f16, [3]), 'x')], [1, -3, 2 ** -24]);
  const bf16 = Buffer.alloc(4);
  bf16.writeUInt16LE(0x3fc0, 0); // 1.5
  bf16.writeUInt16LE(0xc0a0, 2); // -5
  assert.deepEqual([...toFloat32(raw('BF16', bf16, [2]), 'x')], [1.5, -5]);
  const f64 = Buffer.alloc(16);
  f64.writeDoubleLE(0.25, 0);
  f64.writeDoubleLE(-1e-3, 8);
  assert.deepEqual([...toFloat32(raw('F64', f64, [2]), 'x')], [0.25, Math.fround(-1e-3)]);
  const i64 = Buffer.alloc(8);
  i64.writeBigInt64LE(12345n);
  assert.deepEqual([...toFloat32(raw('I64', i64, []), 'x')], [12345]);
  // Unaligned F32 bytes (a view at an odd offset of the file) copy correctly.
  const f32 = Buffer.alloc(9);
  f32.writeFloatLE(2.5, 1);
  f32.writeFloatLE(-0.125, 5);
  assert.deepEqual([...toFloat32(raw('F32', f32.subarray(1), [2]), 'x')], [2.5, -0.125]);
  assert.throws(() => toFloat32(raw('U8', Buffer.alloc(1), [1]), 'w.safetensors: mask'), /w\.safetensors: mask: dtype U8 cannot be imported/);
});

test('stem_channels widens the stem and stage 1\'s input; the network runs', () => {
  for (const [stem, names] of [['v1c', ['stem.0', 'stem.3', 'stem.6']], ['v1b', ['conv1']]] as const) {
    const cfg = resolveConfig({ overrides: [`model.backbone.stem=${stem}`, 'model.backbone.base_channels=4', 'model.backbone.stem_channels=12', 'model.head.channels=8'] });
    const model = buildModel(cfg.model, 3, 0);
    try {
      const shapes = modelShapes(model);
      const outs = names.map((n) => shapes.get(`backbone.${n}.weight`)![3]);
      assert.deepEqual(outs, stem === 'v1c' ? [6, 6, 12] : [12]);
      assert.deepEqual(shapes.get('backbone.layer1.0.conv1.weight'), [3, 3, 12, 4]);
      assert.deepEqual(shapes.get('backbone.layer1.0.downsample.0.weight'), [1, 1, 12, 4]);
      const y = tf.tidy(() => model.forward(tf.ones([1, 32, 32, 3]), { training: false, seed: 0 }).out);
      assert.deepEqual(y.shape, [1, 32, 32, 3]);
      y.dispose();
    } finally {
      model.dispose();
    }
  }
});
