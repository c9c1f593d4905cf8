// `segdist weights import` end to end: a state_dict written here as PyTorch saves one (OIHW, a
// `module.` prefix, F16/BF16/I64 tensors, an extra classifier) goes through the real CLI, and the
// values must land in segdist's layout exactly. Plus strict mode, mismatches, and the PyTorch parity
// goldens imported through the same path.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { readSafetensors, readSafetensorsRaw } from '../src/checkpoint/safetensors';
import { toFloat32 } from '../src/weights/tensor-values';
import { ConfigError } from '../src/config/config-error';
import { resolveConfig } from '../src/config/load-config';
import { buildModel, type ModelConfig } from '../src/models/build-model';
import type { EncoderDecoder } from '../src/models/encoder-decoder';
import { convertWeights, modelShapes } from '../src/weights/convert-weights';
import { loadPretrained } from '../src/weights/pretrained';
import { randomData } from './helpers/compare';
import { runCli, tempDir, tinyOverrides } from './helpers/tiny-run';
import { torchEntriesOf, writeTorchSafetensors, type TorchEntry } from './helpers/torch-safetensors';
import { nchwToNhwc, nhwcToNchw, noise, readGoldens, relErr, PARITY_DIR, TOLERANCE } from './fixtures/parity/goldens';

const dir = tempDir('weights-import');
const OVERRIDES = tinyOverrides(dir);

/** Small multiples of 1/64: exact in F16 and BF16, so the test can compare exactly. */
const exactHalf = (n: number, seed: number) => Array.from(randomData(n, seed), (v) => Math.round(v * 100) / 64);

let source: EncoderDecoder;
let entries: TorchEntry[];
let bnCount = 0;

before(async () => {
  await tf.setBackend('cpu');
  const cfg = resolveConfig({ overrides: OVERRIDES });
  // Every tensor distinct and random, so a value landing in the wrong place or order shows.
  source = buildModel(cfg.model, cfg.data.num_classes, 0, { initialize: false });
  [...source.namedParameters(), ...source.namedBuffers()].forEach(([, v], i) => v.assign(tf.tensor(randomData(v.size, 100 + i), v.shape)));
  source.backbone.namedParameters().find(([n]) => n === 'bn1.weight')![1].assign(tf.tensor(exactHalf(4, 1)));
  source.backbone.namedParameters().find(([n]) => n === 'bn1.bias')![1].assign(tf.tensor(exactHalf(4, 2)));
  entries = torchEntriesOf(source, 'module.');
  for (const e of entries) {
    if (e.name === 'module.backbone.bn1.weight') e.dtype = 'F16';
    if (e.name === 'module.backbone.bn1.bias') e.dtype = 'BF16';
  }
  for (const e of [...entries]) {
    if (e.name.endsWith('.running_var')) {
      entries.push({ name: e.name.replace('running_var', 'num_batches_tracked'), dtype: 'I64', shape: [], values: [1234] });
      bnCount++;
    }
  }
  entries.push({ name: 'module.fc.weight', dtype: 'F32', shape: [10, 32], values: randomData(320, 5) });
  entries.push({ name: 'module.fc.bias', dtype: 'F32', shape: [10], values: randomData(10, 6) });
  writeTorchSafetensors(path.join(dir, 'torch.safetensors'), entries);
});

after(() => {
  source.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('weights import: values land in HWIO under segdist names; the report counts exactly', async () => {
  const out = path.join(dir, 'imported.safetensors');
  const r = await runCli(['weights', 'import', path.join(dir, 'torch.safetensors'), '--out', out, ...OVERRIDES]);
  assert.equal(r.code, 0, r.stderr);
  const own = [...source.namedParameters(), ...source.namedBuffers()];
  assert.match(r.stdout, new RegExp(`scheme mmseg \\(auto: mmseg ${own.length}, .*\\): ${own.length} matched, 0 missing, 2 unexpected, 0 shape-mismatched; ${bnCount} num_batches_tracked dropped`));
  assert.match(r.stdout, /^unexpected .*\n {2}module\.fc\.weight\n {2}module\.fc\.bias$/m);
  const file = readSafetensors(out);
  assert.equal(file.metadata.format, 'pt-names-hwio');
  assert.deepEqual([...file.tensors.keys()].sort(), own.map(([n]) => n).sort());
  for (const [name, v] of own) {
    const t = file.tensors.get(name)!;
    assert.deepEqual(t.shape, v.shape, name);
    assert.deepEqual(t.data, v.dataSync(), `${name} differs`);
  }
  assert.deepEqual([...file.tensors.get('backbone.bn1.weight')!.data], exactHalf(4, 1));
});

test('--strict refuses unexpected keys, naming them (exit 2), and writes nothing', async () => {
  const out = path.join(dir, 'strict.safetensors');
  const r = await runCli(['weights', 'import', path.join(dir, 'torch.safetensors'), '--out', out, '--strict', ...OVERRIDES]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--strict refuses an import that does not match the model exactly \(scheme mmseg\): 2 unexpected: module\.fc\.weight, module\.fc\.bias/);
  assert.ok(!fs.existsSync(out));
});

test('missing and shape-mismatched tensors are reported with both shapes and left out of the file', async () => {
  const partial = path.join(dir, 'partial.safetensors');
  writeTorchSafetensors(partial, entries.filter((e) => e.name !== 'module.auxiliary_head.conv_seg.bias'));
  const out = path.join(dir, 'partial-out.safetensors');
  // Four classes: both classifiers differ in shape from the file's three.
  const r = await runCli(['weights', 'import', partial, '--out', out, '--scheme', 'mmseg', ...OVERRIDES, 'data.num_classes=4']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /: \d+ matched, 1 missing, 2 unexpected, 3 shape-mismatched/);
  assert.match(r.stdout, /^missing .*\n {2}auxiliary_head\.conv_seg\.bias$/m);
  assert.match(r.stdout, /^ {2}module\.decode_head\.conv_seg\.weight: \[3, 8, 1, 1\] vs \[4, 8, 1, 1\]$/m);
  assert.match(r.stdout, /^ {2}module\.decode_head\.conv_seg\.bias: \[3\] vs \[4\]$/m);
  assert.match(r.stdout, /the 4 model tensors it lacks keep their seeded initialisation/);
  const names = [...readSafetensors(out).tensors.keys()];
  assert.ok(!names.some((n) => n.includes('conv_seg')), names.join(', '));

  const strict = await runCli(['weights', 'import', partial, '--out', out, ...OVERRIDES, 'data.num_classes=4', 'model.pretrained_strict=true']);
  assert.equal(strict.code, 2);
  assert.match(strict.stderr, /model\.pretrained_strict refuses .*1 missing: auxiliary_head\.conv_seg\.bias; 2 unexpected: .*; 3 shape-mismatched: module\.decode_head\.conv_seg\.weight \[3, 8, 1, 1\] vs \[4, 8, 1, 1\]/);
});

test('a missing input file and a file matching nothing are config errors naming the file', async () => {
  const r = await runCli(['weights', 'import', path.join(dir, 'nope.safetensors'), '--out', path.join(dir, 'x.safetensors'), ...OVERRIDES]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /nope\.safetensors: file not found/);
  const alien = path.join(dir, 'alien.safetensors');
  writeTorchSafetensors(alien, [{ name: 'encoder.weight', dtype: 'F32', shape: [2], values: [1, 2] }]);
  assert.throws(() => convertWeights(alien, modelShapes(source), 'auto'),
    (e: unknown) => e instanceof ConfigError && /alien\.safetensors: no tensor matches the configured model .*e\.g\. encoder\.weight/.test((e as Error).message));
});

test('the PyTorch parity golden (mmseg names, F16, OIHW) imports fully and reproduces PyTorch\'s logits', () => {
  const name = 'model-pspnet-r50-v1c-os16.safetensors';
  const g = readGoldens(name);
  // The golden's own model config, in its 'plain' variant (every dilated block fully dilated).
  const modelCfg = g.meta<ModelConfig>('model');
  const model = buildModel({ ...modelCfg, backbone: { ...modelCfg.backbone, contract_dilation: false } }, Number(g.metadata.num_classes), 0);
  try {
    const report = loadPretrained(model, { pretrained: path.join(PARITY_DIR, name), pretrained_scheme: 'auto' });
    assert.equal(report.scheme, 'mmseg');
    assert.deepEqual([report.missing, report.mismatched], [[], []]);
    assert.ok(report.unexpected.every((u) => u.key.startsWith('golden/')));
    const input = g.meta<{ shape: number[]; noise_seed: number; sample_scale: number[]; sample_shift: number[] }>('input');
    const data = noise(input.shape, input.noise_seed);
    const per = data.length / input.shape[0];
    for (let i = 0; i < data.length; i++) data[i] = Math.fround(data[i] * input.sample_scale[Math.floor(i / per)] + input.sample_shift[Math.floor(i / per)]);
    const x = nchwToNhwc(data, input.shape);
    const logits = tf.tidy(() => model.forward(tf.tensor4d(x.data, x.shape as [number, number, number, number]), { training: false, seed: 0 }).out);
    const out = nhwcToNchw(logits.dataSync() as Float32Array, logits.shape);
    logits.dispose();
    // The golden keeps every out_sub-th row and column.
    const s = Number(g.metadata.out_sub);
    const [n, ch, h, w] = out.shape;
    const sub: number[] = [];
    for (let b = 0; b < n * ch; b++) for (let i = 0; i < h; i += s) for (let j = 0; j < w; j += s) sub.push(out.data[(b * h + i) * w + j]);
    assert.ok(relErr(sub, g.get('golden/plain/eval/out').data) < TOLERANCE);
  } finally {
    model.dispose();
  }
});

test('a semseg PSPNet-50 checkpoint (module. keys, F16, I64 counters) imports by the semseg scheme and reproduces semseg\'s logits', () => {
  // tools/make_weight_key_fixtures.py: semseg's PSPNet-50 at 1/16 width (deep stem 4, 4, 8), eval output from PyTorch.
  const file = path.resolve(__dirname, '../../test/fixtures/weights/semseg-pspnet50-tiny.safetensors');
  const cfg = resolveConfig({ overrides: [
    'model.backbone.depth=50', 'model.backbone.stem=v1c', 'model.backbone.base_channels=4', 'model.backbone.stem_channels=8',
    'model.backbone.contract_dilation=false', 'model.head.channels=32', 'model.aux.channels=16', 'model.head.dropout=0', 'model.aux.dropout=0',
  ] });
  const model = buildModel(cfg.model, 3, 0);
  try {
    const report = loadPretrained(model, { pretrained: file, pretrained_scheme: 'auto' });
    assert.equal(report.scheme, 'semseg');
    assert.deepEqual([report.missing, report.mismatched], [[], []]);
    assert.deepEqual(report.unexpected.map((u) => u.key), ['golden.input', 'golden.out']);
    assert.equal(report.numBatchesTracked, model.namedBuffers().length / 2);
    const stored = readSafetensorsRaw(file).tensors;
    const golden = (k: string) => ({ shape: stored.get(k)!.shape, data: toFloat32(stored.get(k)!, k) });
    const input = golden('golden.input');
    const x = nchwToNhwc(input.data, input.shape);
    const logits = tf.tidy(() => model.forward(tf.tensor4d(x.data, x.shape as [number, number, number, number]), { training: false, seed: 0 }).out);
    const out = nhwcToNchw(logits.dataSync() as Float32Array, logits.shape);
    logits.dispose();
    assert.deepEqual(out.shape, golden('golden.out').shape);
    assert.ok(relErr(out.data, golden('golden.out').data) < TOLERANCE);
  } finally {
    model.dispose();
  }
});
