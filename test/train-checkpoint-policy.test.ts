import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolveConfig } from '../src/config/load-config';
import { train } from '../src/train/train-run';
import { SilentRunLogger } from '../src/train/run-logger';
import { runCli, tempDir, tinyOverrides } from './helpers/tiny-run';

const quiet = new SilentRunLogger();

test('early stopping, best copy and eval reproducing the validation mIoU', async () => {
  const dir = tempDir('policy');
  // lr 0 and every part with batch norm frozen (so BN keeps its running statistics): the model never
  // changes, so the monitored mIoU never improves after the first validation.
  const cfg = resolveConfig({
    overrides: [
      ...tinyOverrides(dir), 'optimizer.lr=0', 'schedule.min_lr=0', 'schedule.warmup_iters=0', 'checkpoint.early_stop_patience=2', 'checkpoint.keep_last=2',
      'schedule.stages=[{frozen: [backbone, auxiliary_head, decode_head.psp_modules, decode_head.bottleneck]}]',
    ],
  });
  const summary = await train(cfg, { logger: quiet });
  assert.equal(summary.stoppedEarly, true);
  assert.equal(summary.iterations, 3 * 4, 'stops after the third validation (two without improvement)');
  assert.equal(summary.best?.epoch, 1);
  const ckpts = fs.readdirSync(path.join(dir, 'checkpoints')).sort();
  assert.deepEqual(ckpts, ['best', 'iter_0000008', 'iter_0000012']);

  // `segdist eval` on the best checkpoint reports exactly the mIoU that training recorded for it.
  const r = await runCli(['eval', '--checkpoint', path.join(dir, 'checkpoints', 'best'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.images, 4);
  assert.ok(Math.abs(report.mIoU - summary.best!.value) < 1e-12, `${report.mIoU} vs ${summary.best!.value}`);
  assert.equal(report.classes.length, 3);
});

test('resuming a checkpoint of another architecture names the first tensor that differs', async () => {
  const dir = tempDir('mismatch');
  await train(resolveConfig({ overrides: [...tinyOverrides(dir), 'train.epochs=1'] }), { logger: quiet });
  const r = await runCli(['train', '--resume', 'auto', ...tinyOverrides(dir), 'model.head.channels=12']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /iter_0000004: the checkpoint does not match the configured model: decode_head\.\S+ has shape \[[\d,]+\] in the checkpoint, \[[\d,]+\] in the model/);
  const missing = await runCli(['train', '--resume', path.join(dir, 'checkpoints', 'nope'), ...tinyOverrides(dir)]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /checkpoints\/nope: not found/);
});
