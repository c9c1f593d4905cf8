// model.pretrained: a training run starts from imported weights. The run here trains at lr 0 with the
// backbone frozen (its BNs in norm_eval), so what the checkpoint holds afterwards is exactly what was
// loaded before the first step: the file's backbone, and the seeded init for the head it lacks.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { findLatestCheckpoint, loadCheckpoint, MODEL_FILE_FORMAT } from '../src/checkpoint/checkpoint-manager';
import { encodeSafetensors, type NamedArray } from '../src/checkpoint/safetensors';
import { ConfigError } from '../src/config/config-error';
import { resolveConfig } from '../src/config/load-config';
import { buildModel } from '../src/models/build-model';
import type { EncoderDecoder } from '../src/models/encoder-decoder';
import { train } from '../src/train/train-run';
import { loadPretrained } from '../src/weights/pretrained';
import { randomData } from './helpers/compare';
import { RecordingLogger } from './helpers/recording-logger';
import { runCli, tempDir, tinyOverrides } from './helpers/tiny-run';
import { torchEntriesOf, writeTorchSafetensors } from './helpers/torch-safetensors';

const dir = tempDir('weights-pretrained');
const torchFile = path.join(dir, 'resnet-classifier.safetensors');
const FROZEN_AT_LR_0 = ['optimizer.lr=0', 'schedule.min_lr=0', 'schedule.warmup_iters=0', 'schedule.stages=[{name: head, frozen: [backbone]}]'];
let source: EncoderDecoder;

before(async () => {
  await tf.setBackend('cpu');
  const cfg = resolveConfig({ overrides: tinyOverrides(dir) });
  source = buildModel(cfg.model, cfg.data.num_classes, 0, { initialize: false });
  [...source.namedParameters(), ...source.namedBuffers()].forEach(([, v], i) => v.assign(tf.tensor(randomData(v.size, 500 + i, 0.1, 1), v.shape)));
  // A torchvision-style classifier: the backbone's tensors without `backbone.`, plus fc, saved from DataParallel.
  writeTorchSafetensors(torchFile, [
    ...torchEntriesOf(source.backbone, 'module.'),
    { name: 'module.fc.weight', dtype: 'F32', shape: [7, 32], values: randomData(224, 1) },
    { name: 'module.fc.bias', dtype: 'F32', shape: [7], values: randomData(7, 2) },
  ]);
});

after(() => {
  source.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('train starts from model.pretrained (a PyTorch file, converted on load); resume takes precedence', async () => {
  const workDir = path.join(dir, 'run');
  const overrides = [...tinyOverrides(workDir, path.join(dir, 'data')), 'train.epochs=1', ...FROZEN_AT_LR_0];
  const cfg = resolveConfig({ overrides: [...overrides, `model.pretrained=${torchFile}`] });
  const log = new RecordingLogger();
  const summary = await train(cfg, { logger: log });
  const backboneCount = source.backbone.namedParameters().length + source.backbone.namedBuffers().length;
  const line = log.lines.find((l) => l.startsWith('model.pretrained: '));
  assert.match(line ?? '', new RegExp(`scheme torchvision .*: ${backboneCount} matched, \\d+ missing, 2 unexpected, 0 shape-mismatched`));

  const saved = loadCheckpoint(summary.checkpoint!).model;
  for (const [name, v] of [...source.backbone.namedParameters(), ...source.backbone.namedBuffers()]) {
    assert.deepEqual(saved.get(`backbone.${name}`)!.data, v.dataSync(), `backbone.${name} is not the file's`);
  }
  const seeded = buildModel(cfg.model, cfg.data.num_classes, cfg.seed);
  try {
    for (const [name, v] of seeded.namedParameters().filter(([n]) => !n.startsWith('backbone.'))) {
      assert.deepEqual(saved.get(name)!.data, v.dataSync(), `${name} is not its seeded init`);
    }
  } finally {
    seeded.dispose();
  }

  // The resumed run never opens model.pretrained: a path that no longer exists does not matter.
  const resumeLog = new RecordingLogger();
  const gone = path.join(dir, 'moved-away.safetensors');
  await train(resolveConfig({ overrides: [...overrides, 'train.epochs=2', `model.pretrained=${gone}`] }), { resume: 'auto', logger: resumeLog });
  assert.ok(resumeLog.lines.some((l) => l.includes(`model.pretrained (${gone}) not loaded: the resumed checkpoint's weights take precedence`)), resumeLog.lines.join('\n'));
  assert.ok(!resumeLog.lines.some((l) => l.startsWith('model.pretrained: ')));
});

test('a missing model.pretrained file is a config error (exit 2) naming the key and the path', async () => {
  const missing = path.join(dir, 'no-such-weights.safetensors');
  const r = await runCli(['train', ...tinyOverrides(path.join(dir, 'missing-run'), path.join(dir, 'data')), `model.pretrained=${missing}`]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`model\\.pretrained: ${missing.replace(/[.]/g, '\\.')}: file not found`));
});

test('a segdist weights file loads by name without conversion; strict refuses what does not match', () => {
  const cfg = resolveConfig({ overrides: tinyOverrides(dir) });
  const model = buildModel(cfg.model, cfg.data.num_classes, cfg.seed);
  try {
    // Backbone only, as `segdist weights import` would write it from a classifier.
    const tensors = new Map<string, NamedArray>(source.backbone.namedParameters().map(([n, v]) =>
      [`backbone.${n}`, { dtype: 'F32', shape: v.shape.slice(), data: v.dataSync() as Float32Array }]));
    const file = path.join(dir, 'segdist-backbone.safetensors');
    fs.writeFileSync(file, encodeSafetensors(tensors, { format: MODEL_FILE_FORMAT }));
    const report = loadPretrained(model, { pretrained: file, pretrained_scheme: 'semseg' });
    assert.equal(report.layout, 'segdist');
    assert.equal(report.matched.length, tensors.size);
    assert.equal(report.missing.length, model.namedParameters().length + model.namedBuffers().length - tensors.size);
    const own = new Map(model.namedParameters());
    for (const [name, t] of tensors) assert.deepEqual(own.get(name)!.dataSync(), t.data, name);

    assert.throws(() => loadPretrained(model, { pretrained: torchFile, pretrained_strict: true }),
      (e: unknown) => e instanceof ConfigError &&
        /model\.pretrained_strict refuses .*\(scheme torchvision\): 24 missing: decode_head\.conv_seg\.weight, .* and 14 more; 2 unexpected: module\.fc\.weight, module\.fc\.bias/.test((e as Error).message));
  } finally {
    model.dispose();
  }
});

test('--gpus 2: both trainers start from model.pretrained (rank 0 loads it, the broadcast carries it)', async () => {
  const workDir = path.join(dir, 'dist-run');
  const r = await runCli(['train', '--gpus', '2', ...tinyOverrides(workDir, path.join(dir, 'data')), 'train.epochs=1', ...FROZEN_AT_LR_0, `model.pretrained=${torchFile}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /model\.pretrained: .* matched/);
  const checkpoint = findLatestCheckpoint(path.join(workDir, 'checkpoints'))!;
  const saved = loadCheckpoint(checkpoint).model;
  for (const [name, v] of source.backbone.namedParameters()) {
    assert.deepEqual(saved.get(`backbone.${name}`)!.data, v.dataSync(), `backbone.${name} is not the file's`);
  }
  // Each trainer scored its half of the validation split with its own weights; that the sum equals
  // one process scoring rank 0's checkpoint shows rank 1 held the same (imported) weights.
  const val = fs.readFileSync(path.join(workDir, 'metrics.jsonl'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l) as Record<string, number | string>).filter((m) => m.kind === 'val').pop()!;
  const ev = await runCli(['eval', '--checkpoint', checkpoint, '--json']);
  assert.equal(ev.code, 0, ev.stderr);
  const report = JSON.parse(ev.stdout) as { mIoU: number; aAcc: number };
  assert.equal(report.mIoU, val['val/mIoU']);
  assert.equal(report.aAcc, val['val/aAcc']);
});
