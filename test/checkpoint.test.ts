import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointManager, findLatestCheckpoint, loadCheckpoint } from '../src/checkpoint/checkpoint-manager';
import type { CheckpointState } from '../src/checkpoint/checkpoint-state';
import { decodeSafetensors, encodeSafetensors, NamedArray, readSafetensors } from '../src/checkpoint/safetensors';
import { resolveConfig } from '../src/config/load-config';

const tensors = (v: number) =>
  new Map<string, NamedArray>([
    ['backbone.conv1.weight', { dtype: 'F32', shape: [3, 3, 3, 2], data: Float32Array.from({ length: 54 }, (_, i) => i * v) }],
    ['idx', { dtype: 'I32', shape: [2], data: Int32Array.of(-1, 7) }],
  ]);

const state = (iteration: number): CheckpointState => ({
  format: 'segdist-checkpoint', version: 1, epoch: iteration, iteration, epoch_iteration: 0, max_iterations: 100, seed: 1, lr: 0.1, stage: 'train',
  best: null, stale_validations: 0, world_size: 1,
  dataset: { num_classes: 2, class_names: ['a', 'b'], ignore_index: 255, mean: [0, 0, 0], std: [1, 1, 1], palette: [[0, 0, 0], [255, 0, 0]] },
  config: resolveConfig({}), saved_at: 'now',
});

test('safetensors round-trips with an 8-byte aligned header and metadata', () => {
  const buf = encodeSafetensors(tensors(0.5), { format: 'pt' });
  const headerLen = Number(buf.readBigUInt64LE(0));
  assert.equal((8 + headerLen) % 8, 0);
  const { tensors: back, metadata } = decodeSafetensors(buf, 'mem');
  assert.deepEqual(metadata, { format: 'pt' });
  assert.deepEqual([...back.keys()], ['backbone.conv1.weight', 'idx']);
  assert.deepEqual(back.get('backbone.conv1.weight')!.shape, [3, 3, 3, 2]);
  assert.deepEqual(Array.from(back.get('backbone.conv1.weight')!.data), Array.from(tensors(0.5).get('backbone.conv1.weight')!.data));
  assert.deepEqual(Array.from(back.get('idx')!.data), [-1, 7]);
});

test('a truncated or garbled safetensors file is a clear error naming it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-st-'));
  const buf = encodeSafetensors(tensors(1));
  const f = path.join(dir, 'cut.safetensors');
  fs.writeFileSync(f, buf.subarray(0, buf.length - 10));
  assert.throws(() => readSafetensors(f), /cut\.safetensors: not a valid safetensors file: .*truncated/);
  fs.writeFileSync(f, Buffer.from('garbage!garbage!'));
  assert.throws(() => readSafetensors(f), /cut\.safetensors: not a valid safetensors file/);
  assert.throws(() => readSafetensors(path.join(dir, 'none.safetensors')), /none\.safetensors: cannot read: file not found/);
});

test('checkpoints: atomic save, keep_last, best copy, latest, stale temporaries swept', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-ckpt-'));
  const mgr = new CheckpointManager(dir, 2);
  const a = mgr.save('iter_0000001', { model: tensors(1), optimizer: tensors(2), state: state(1) });
  mgr.markBest(a);
  mgr.save('iter_0000002', { model: tensors(3), optimizer: tensors(4), state: state(2) });
  mgr.save('iter_0000003', { model: tensors(5), optimizer: tensors(6), state: state(3) });
  assert.deepEqual(fs.readdirSync(dir).sort(), ['best', 'iter_0000002', 'iter_0000003']);
  assert.equal(mgr.latest(), path.join(dir, 'iter_0000003'));
  const best = loadCheckpoint(path.join(dir, 'best'));
  assert.equal(best.state.iteration, 1);
  assert.equal(best.model.get('backbone.conv1.weight')!.data[1], 1);

  // A crash mid-save leaves a temporary directory: it is never taken as latest, and is swept.
  fs.mkdirSync(path.join(dir, '.tmp-iter_0000009-123'));
  fs.writeFileSync(path.join(dir, '.tmp-iter_0000009-123', 'state.json'), '{"format":"segdist-checkpoint","iteration":9}');
  assert.equal(findLatestCheckpoint(dir), path.join(dir, 'iter_0000003'));
  assert.ok(!fs.existsSync(path.join(dir, '.tmp-iter_0000009-123')));

  // Saving under an existing name replaces it completely.
  mgr.save('iter_0000003', { model: tensors(7), optimizer: tensors(8), state: state(3) });
  assert.equal(loadCheckpoint(path.join(dir, 'iter_0000003')).model.get('backbone.conv1.weight')!.data[1], 7);
});

test('loading a damaged checkpoint names the file at fault', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-ckpt-'));
  const mgr = new CheckpointManager(dir, 0);
  const p = mgr.save('iter_0000001', { model: tensors(1), optimizer: tensors(2), state: state(1) });
  fs.truncateSync(path.join(p, 'model.safetensors'), 20);
  assert.throws(() => loadCheckpoint(p), /model\.safetensors: not a valid safetensors file/);
  fs.writeFileSync(path.join(p, 'state.json'), '{ not json');
  assert.throws(() => loadCheckpoint(p), /cannot read state\.json/);
  assert.throws(() => loadCheckpoint(path.join(dir, 'nope')), /nope: not found/);
});
