// Data-parallel training with real trainer processes started by the real launcher (segdist train
// --gpus N, CPU trainers here), talking over real ZeroMQ sockets on loopback.
import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadCheckpoint } from '../src/checkpoint/checkpoint-manager';
import { resolveConfig } from '../src/config/load-config';
import { synthesizeDataset } from '../src/data/synth-dataset';
import { buildModel } from '../src/models/build-model';
import { prepareData } from '../src/train/data-setup';
import { Sgd } from '../src/train/sgd';
import { TrainMetrics } from '../src/train/train-metrics';
import { trainStep } from '../src/train/train-step';
import { freeLoopbackPort } from '../src/cluster/local-job';
import { loadBackend } from '../src/backend/load-backend';
import { runCli, tempDir } from './helpers/tiny-run';

let dataRoot: string;

before(async () => {
  // No ignore pixels and no padding: every trainer's loss is a mean over the same number of pixels,
  // so the average of the per-trainer losses is the loss of the whole batch.
  dataRoot = path.join(tempDir('dist-data'), 'synth');
  await synthesizeDataset({ out: dataRoot, classes: 3, count: { train: 4, val: 4 }, size: [32, 32], seed: 3, ignoreBorder: 0 });
});

function overrides(workDir: string, batch: number, extra: string[] = []): string[] {
  return [
    `work_dir=${workDir}`, `data.root=${dataRoot}`, 'data.synthesize=false', 'data.num_classes=3', 'backend=cpu',
    `data.train.batch_size=${batch}`, 'data.val.batch_size=1', 'data.train.crop_size=[32,32]',
    'data.train.transforms=[{type: random_crop}, {type: flip, prob: 0.5}, {type: normalize}]',
    'model.backbone.base_channels=4', 'model.head.channels=8', 'model.aux.channels=4', 'model.head.pool_scales=[1,2]',
    'model.head.dropout=0', 'model.aux.dropout=0', 'train.epochs=1', 'train.log_interval=1', 'train.val_interval=1',
    'optimizer.lr=0.1', 'schedule.warmup_iters=0', 'dist.timeout_s=60', ...extra,
  ];
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(a[i]));
  }
  return num / Math.max(den, 1e-12);
}

function jsonl(workDir: string, kind: string): Record<string, number>[] {
  return fs.readFileSync(path.join(workDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.kind === kind);
}

test('2 trainers x batch 2 with SyncBN make the same step as 1 trainer x batch 4 with BN; distributed validation equals single-process eval', async () => {
  const single = tempDir('one-by-4');
  const r1 = await runCli(['train', ...overrides(single, 4)]);
  assert.equal(r1.code, 0, r1.stderr);
  const dist = tempDir('two-by-2');
  const r2 = await runCli(['train', '--gpus', '2', ...overrides(dist, 2, ['model.norm=syncbn'])]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr, /launching 2 CPU trainer\(s\); world size 2/);

  const a = loadCheckpoint(path.join(single, 'checkpoints', 'iter_0000001')).model;
  const b = loadCheckpoint(path.join(dist, 'checkpoints', 'iter_0000001')).model;
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [name, t] of a) assert.ok(relDiff(t.data, b.get(name)!.data) < 1e-5, `${name}: relative difference ${relDiff(t.data, b.get(name)!.data)}`);
  const [la] = jsonl(single, 'train');
  const [lb] = jsonl(dist, 'train');
  assert.ok(Math.abs(la.loss - lb.loss) / la.loss < 1e-5, `loss ${la.loss} vs ${lb.loss}`);

  // Each trainer scored its half of the validation split; the sums equal one process scoring all of it.
  const [val] = jsonl(dist, 'val');
  const ev = await runCli(['eval', '--checkpoint', path.join(dist, 'checkpoints', 'iter_0000001'), '--json']);
  assert.equal(ev.code, 0, ev.stderr);
  const report = JSON.parse(ev.stdout);
  assert.equal(report.images, 4);
  assert.equal(report.mIoU, val['val/mIoU']);
  assert.equal(report.aAcc, val['val/aAcc']);
});

test('without SyncBN the update is the average of the per-trainer gradients', async () => {
  const dist = tempDir('bn-average');
  const extra = ['optimizer.momentum=0', 'optimizer.weight_decay=0'];
  // Over the ZeroMQ data plane (the other tests use the default, stream): the key reaches the trainers.
  const r = await runCli(['train', '--gpus', '2', ...overrides(dist, 2, extra), 'dist.data_plane=zeromq']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /trainer 0 of 2 joined \(data plane: zeromq\)/);
  const after = loadCheckpoint(path.join(dist, 'checkpoints', 'iter_0000001')).model;

  // Recompute here what each trainer saw: its own shard's first batch, from the same initial weights,
  // on the backend exactly as the trainers load it (with segdist's fused cpu kernels).
  await loadBackend('cpu');
  const cfg = resolveConfig({ overrides: overrides(dist, 2, extra) });
  const grads: Map<string, Float32Array>[] = [];
  let initial = new Map<string, Float32Array>();
  for (const rank of [0, 1]) {
    const model = buildModel(cfg.model, 3, cfg.seed);
    const params = model.namedParameters();
    initial = new Map(params.map(([n, v]) => [n, v.dataSync() as Float32Array]));
    const data = await prepareData(cfg, () => {}, { rank, worldSize: 2 });
    const iterator = data.train.batches(0)[Symbol.asyncIterator]();
    const batch = (await iterator.next()).value!;
    await iterator.return?.();
    await data.close();
    const captured = new Map<string, Float32Array>();
    const sgd = new Sgd(params, { momentum: 0, weightDecay: 0, nesterov: false });
    const metrics = new TrainMetrics(3, 255);
    await trainStep(model, params, sgd, metrics, batch, {
      ignoreIndex: 255, auxWeight: cfg.model.aux.weight, lr: 0, ctx: { training: true, seed: 0 },
      reduceGradients: (g) => {
        for (const [n, t] of g) captured.set(n, t.dataSync() as Float32Array);
        return g;
      },
    });
    grads.push(captured);
    metrics.dispose();
    sgd.dispose();
    model.dispose();
  }
  for (const [name, w0] of initial) {
    const update = Array.from(w0, (_, i) => -0.1 * (grads[0].get(name)![i] + grads[1].get(name)![i]) / 2);
    const got = after.get(name)!.data;
    // The trainers store w0 + update in float32, which cannot hold it closer than half an ulp of w, so
    // that much of each element's difference is representation, not a wrong update.
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < w0.length; i++) {
      const representable = Math.abs(w0[i]) * 2 ** -24;
      worst = Math.max(worst, Math.abs(w0[i] + update[i] - got[i]) - representable);
      scale = Math.max(scale, Math.abs(update[i]));
    }
    const change = worst / scale;
    assert.ok(change < 1e-4, `${name}: the update differs from the averaged gradients' by ${change} (relative)`);
  }
});

test('kill -9 of a trainer ends the job naming its rank; with --max-restarts 1 the job still finishes', async () => {
  const killRank1 = (text: string, child: { kill: (s: NodeJS.Signals) => boolean }, state: { done: boolean }, stderrOf: () => string) => {
    if (state.done || !/epoch 2\/8/.test(text)) return;
    const pid = /rank 1: pid (\d+)/.exec(stderrOf());
    if (!pid) return;
    state.done = true;
    process.kill(Number(pid[1]), 'SIGKILL');
    void child;
  };
  // 2 trainers x batch 2 = one iteration per epoch, a checkpoint after each.
  const tiny = (dir: string) => [...overrides(dir, 2, ['train.epochs=8', 'dist.timeout_s=20'])];

  for (const restarts of [0, 1]) {
    const dir = tempDir(`kill-${restarts}`);
    const state = { done: false };
    let stderr = '';
    const started = Date.now();
    const r = await runCli(['train', '--gpus', '2', '--max-restarts', String(restarts), ...tiny(dir)], {
      onStdout: (out, child) => killRank1(out, child, state, () => stderr),
      onStderr: (err) => (stderr = err),
      timeoutMs: 150000,
    });
    assert.ok(state.done, `never killed rank 1; stderr:\n${r.stderr}`);
    assert.match(r.stderr, /rank 1 failed \(killed by SIGKILL\)/);
    if (restarts === 0) {
      assert.equal(r.code, 1, r.stderr);
    } else {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /restarting all trainers from the latest complete checkpoint \(restart 1 of 1\)/);
      assert.match(r.stdout, /resumed from .*iter_\d+/);
      assert.equal(loadCheckpoint(path.join(dir, 'checkpoints', 'iter_0000008')).state.epoch, 8, 'all 8 epochs done');
    }
    assert.ok(Date.now() - started < 120000);
  }
});

test('a checkpoint of 2 trainers resumes with 1', async () => {
  const dir = tempDir('reshape');
  const r2 = await runCli(['train', '--gpus', '2', ...overrides(dir, 2, ['train.epochs=1'])]);
  assert.equal(r2.code, 0, r2.stderr);
  const r1 = await runCli(['train', '--resume', 'auto', ...overrides(dir, 2, ['train.epochs=2'])]);
  assert.equal(r1.code, 0, r1.stderr);
  assert.match(r1.stderr, /iter_0000001 was written by 2 trainer\(s\), this job has 1: continuing at epoch 1, batch 0 of 2/);
  const last = loadCheckpoint(path.join(dir, 'checkpoints', 'iter_0000004')).state;
  assert.deepEqual([last.epoch, last.iteration, last.world_size], [2, 4, 1]);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('SIGINT to the launcher stops every trainer at the same step with a checkpoint, leaves no process behind, and the job resumes', async () => {
  const dir = tempDir('sigint');
  const args = overrides(dir, 2, ['train.epochs=8']);
  let stderr = '';
  let sent = false;
  const r = await runCli(['train', '--gpus', '2', ...args], {
    onStdout: (out, child) => {
      if (!sent && /epoch 3\/8/.test(out)) {
        sent = true;
        child.kill('SIGINT');
      }
    },
    onStderr: (err) => (stderr = err),
  });
  assert.ok(sent);
  assert.equal(r.code, 130, r.stderr);
  const pids = [...stderr.matchAll(/rank \d: pid (\d+)/g)].map((m) => Number(m[1]));
  assert.equal(pids.length, 2);
  assert.deepEqual(pids.filter(alive), [], 'no trainer outlives the launcher');
  const saved = fs.readdirSync(path.join(dir, 'checkpoints')).filter((n) => n.startsWith('iter_')).sort();
  const interruptedAt = loadCheckpoint(path.join(dir, 'checkpoints', saved.at(-1)!)).state;
  assert.ok(interruptedAt.iteration >= 2 && interruptedAt.iteration < 8, `stopped at iteration ${interruptedAt.iteration}`);

  const resumed = await runCli(['train', '--gpus', '2', '--resume', 'auto', ...args]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(loadCheckpoint(path.join(dir, 'checkpoints', 'iter_0000008')).state.epoch, 8);
});

test('trainers started by hand with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT join like launched ones', async () => {
  const launched = tempDir('launched');
  const r = await runCli(['train', '--gpus', '2', ...overrides(launched, 2, ['model.norm=syncbn'])]);
  assert.equal(r.code, 0, r.stderr);

  const byHand = tempDir('by-hand');
  const port = await freeLoopbackPort();
  const env = { WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), SEGDIST_JOB_TOKEN: 'by-hand-token' };
  const ranks = await Promise.all([0, 1].map((rank) =>
    runCli(['train', ...overrides(byHand, 2, ['model.norm=syncbn'])], { env: { ...env, RANK: String(rank), LOCAL_RANK: String(rank) } })));
  for (const x of ranks) assert.equal(x.code, 0, x.stderr);
  const a = loadCheckpoint(path.join(launched, 'checkpoints', 'iter_0000001')).model;
  const b = loadCheckpoint(path.join(byHand, 'checkpoints', 'iter_0000001')).model;
  for (const [name, t] of a) assert.deepEqual(Array.from(b.get(name)!.data), Array.from(t.data), name);
});

test('stages switch at the same iteration on every trainer, and a frozen backbone stays put', async () => {
  const dir = tempDir('dist-stages');
  const stages = 'schedule.stages=[{name: head, epochs: 1, frozen: [backbone]}, {name: finetune}]';
  const r = await runCli(['train', '--gpus', '2', ...overrides(dir, 2, ['train.epochs=2', stages])]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^stage 1\/2 'head': iterations 0-0, \d+ of \d+ parameters trainable \(frozen: backbone\)/m);
  assert.match(r.stdout, /^stage 2\/2 'finetune': iterations 1-1/m);
  const cfg = resolveConfig({ overrides: overrides(dir, 2, ['train.epochs=2', stages]) });
  await loadBackend('cpu');
  const init = buildModel(cfg.model, 3, cfg.seed);
  const afterHead = loadCheckpoint(path.join(dir, 'checkpoints', 'iter_0000001')).model;
  const afterAll = loadCheckpoint(path.join(dir, 'checkpoints', 'iter_0000002')).model;
  for (const [name, v] of init.namedParameters()) {
    const w0 = v.dataSync();
    const same = (t: ArrayLike<number>) => Array.from(w0).every((x, i) => x === t[i]);
    if (name.startsWith('backbone.')) {
      assert.ok(same(afterHead.get(name)!.data), `${name} moved while frozen`);
      if (name.endsWith('conv1.weight')) assert.ok(!same(afterAll.get(name)!.data), `${name} did not train after unfreezing`);
    }
  }
  init.dispose();
});
