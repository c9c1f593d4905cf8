import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint } from '../src/checkpoint/checkpoint-manager';
import { resolveConfig } from '../src/config/load-config';
import { train, TrainingInterrupted } from '../src/train/train-run';
import { RecordingLogger } from './helpers/recording-logger';
import { runCli, tempDir, tinyOverrides } from './helpers/tiny-run';

function maxAbsDiff(a: string, b: string): { max: number; names: number } {
  const x = loadCheckpoint(a).model;
  const y = loadCheckpoint(b).model;
  assert.deepEqual([...x.keys()], [...y.keys()]);
  let max = 0;
  for (const [name, t] of x) {
    const u = y.get(name)!;
    for (let i = 0; i < t.data.length; i++) max = Math.max(max, Math.abs(t.data[i] - u.data[i]));
  }
  return { max, names: x.size };
}

test('4 epochs straight equal 2 epochs + resume + 2 epochs (cpu backend)', async () => {
  const dataRoot = path.join(tempDir('data'), 'synth');
  const straightDir = tempDir('straight');
  const straight = await train(resolveConfig({ overrides: tinyOverrides(straightDir, dataRoot) }), { logger: new RecordingLogger() });
  assert.equal(straight.iterations, 16);

  const splitDir = tempDir('split');
  const controller = new AbortController();
  const cfg = resolveConfig({ overrides: tinyOverrides(splitDir, dataRoot) });
  await assert.rejects(train(cfg, { stopSignal: controller.signal, logger: new RecordingLogger({ epoch: 2, controller }) }), TrainingInterrupted);
  const midway = loadCheckpoint(path.join(splitDir, 'checkpoints', 'iter_0000008'));
  assert.equal(midway.state.epoch, 2);
  assert.equal(midway.state.epoch_iteration, 0);

  const log = new RecordingLogger();
  const resumed = await train(cfg, { resume: 'auto', logger: log });
  assert.ok(log.lines.some((l) => /resumed from .*iter_0000008 at epoch 2, iteration 8/.test(l)), log.lines.join('\n'));
  assert.equal(resumed.iterations, 16);
  const d = maxAbsDiff(straight.checkpoint!, resumed.checkpoint!);
  assert.ok(d.names > 50);
  assert.ok(d.max <= 1e-6, `weights differ by ${d.max}`);
  // The optimizer state and the best metric came back too.
  assert.deepEqual(loadCheckpoint(resumed.checkpoint!).state.best, loadCheckpoint(straight.checkpoint!).state.best);
});

test('SIGINT mid-epoch saves a checkpoint, exits 130, and --resume auto ends with the same weights', async () => {
  const dataRoot = path.join(tempDir('data'), 'synth');
  const straightDir = tempDir('cli-straight');
  const straight = await runCli(['train', ...tinyOverrides(straightDir, dataRoot)]);
  assert.equal(straight.code, 0, straight.stderr);
  assert.match(straight.stdout, /checkpoints in .*checkpoints, metrics in .*metrics\.jsonl/);

  const dir = tempDir('cli-interrupted');
  let sent = false;
  const interrupted = await runCli(['train', ...tinyOverrides(dir, dataRoot)], {
    onStdout: (out, child) => {
      // Stop inside epoch 2, between two logging steps, i.e. not at an epoch boundary.
      if (!sent && /epoch 2\/4 iter 2\/4/.test(out)) {
        sent = true;
        child.kill('SIGINT');
      }
    },
  });
  assert.ok(sent, 'the run never reached epoch 2');
  assert.equal(interrupted.code, 130, interrupted.stderr);
  assert.match(interrupted.stderr, /SIGINT: stopping after the current step/);
  const saved = fs.readdirSync(path.join(dir, 'checkpoints')).filter((n) => n.startsWith('iter_'));
  const last = saved.sort().at(-1)!;
  const state = loadCheckpoint(path.join(dir, 'checkpoints', last)).state;
  assert.ok(state.epoch_iteration > 0 && state.epoch === 1, `expected a mid-epoch checkpoint, got epoch ${state.epoch} + ${state.epoch_iteration}`);

  const resumed = await runCli(['train', '--resume', 'auto', ...tinyOverrides(dir, dataRoot)]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`resumed from .*${last}`));
  const d = maxAbsDiff(path.join(straightDir, 'checkpoints', 'iter_0000016'), path.join(dir, 'checkpoints', 'iter_0000016'));
  assert.ok(d.max <= 1e-6, `weights differ by ${d.max}`);
});
