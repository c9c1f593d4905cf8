// `segdist eval` on a checkpoint trained on the tiny synthetic set: it reproduces the validation mIoU
// that training recorded, sharded evaluation sums to the single-process result exactly (in process,
// and as --gpus 3 over the cluster's ring), slide mode with the image as the window equals whole mode,
// and bad test settings are config errors (exit 2, before any process is started).

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadCheckpoint } from '../src/checkpoint/checkpoint-manager';
import { resolveConfig } from '../src/config/load-config';
import { loadSample } from '../src/data/load-sample';
import { evalConfig, evaluateCheckpoint, evaluateShard, sumAcrossRanks, type ShardInput } from '../src/eval/eval-run';
import { testImagePreparer } from '../src/eval/test-input';
import { testOptions } from '../src/eval/test-time';
import { buildModel } from '../src/models/build-model';
import { datasetInfo, loadOptions, readSplit } from '../src/train/data-setup';
import { train, type TrainSummary } from '../src/train/train-run';
import { SilentRunLogger } from '../src/train/run-logger';
import { loadModelState } from '../src/train/state-dict';
import { runCli, tempDir, tinyOverrides } from './helpers/tiny-run';


let dir: string;
let best: string;
let summary: TrainSummary;

before(async () => {
  dir = tempDir('eval');
  // 7 validation images with a batch of 3: a last partial batch, and shards of unequal length. lr 0:
  // the initial weights with trained BN statistics predict every class somewhere (a tiny model
  // trained for seconds predicts the background everywhere, which would make a weak check).
  const cfg = resolveConfig({ overrides: [...tinyOverrides(dir), 'data.synth.val_count=7', 'data.val.batch_size=3', 'train.epochs=3', 'train.val_interval=3', 'optimizer.lr=0', 'schedule.min_lr=0', 'schedule.warmup_iters=0'] });
  summary = await train(cfg, { logger: new SilentRunLogger() });
  best = path.join(dir, 'checkpoints', 'best');
});

test('eval reproduces the validation mIoU training recorded for the checkpoint', async () => {
  const report = await evaluateCheckpoint({ checkpoint: best, log: () => {} });
  assert.equal(report.images, 7);
  assert.equal(report.mIoU, summary.best!.value);
  assert.equal(report.classes.length, 3);
  assert.ok(report.classes.filter((c) => (c.iou ?? 0) > 0).length >= 2, JSON.stringify(report.classes));
  assert.deepEqual(report.test, { mode: 'whole', crop_size: null, stride: null, scales: [1], flip: false });
});

test('shards of 2 and 3 ranks sum to the single-process confusion matrix exactly', async () => {
  const tensorsBefore = tf.memory().numTensors;
  const ckpt = loadCheckpoint(best);
  const cfg = evalConfig(best, ckpt.state.config);
  const info = datasetInfo(cfg, cfg.data.root);
  const refs = await readSplit(cfg, cfg.data.root, cfg.data.val_split, 'val');
  const model = buildModel(cfg.model, info.num_classes, cfg.seed);
  loadModelState(model, ckpt.model, best);
  const load = loadOptions(cfg, info);
  for (const mode of ['whole', 'slide'] as const) {
    const input: ShardInput = {
      model, refs, numClasses: 3, ignoreIndex: info.ignore_index,
      test: { ...testOptions(cfg), mode, cropSize: [24, 24], stride: [16, 16] },
      prepare: testImagePreparer(cfg.data.val.transforms, { mean: cfg.data.mean, std: cfg.data.std, ignoreIndex: info.ignore_index }),
      load: (ref) => loadSample(ref, load),
    };
    const single = await evaluateShard(input, { rank: 0, worldSize: 1 });
    assert.equal(single.images, 7);
    for (const worldSize of [2, 3]) {
      const shards = [];
      for (let rank = 0; rank < worldSize; rank++) shards.push(await evaluateShard(input, { rank, worldSize }));
      assert.equal(shards.reduce((n, s) => n + s.images, 0), 7);
      // The allreduce: every rank's encoded counts summed elementwise in float32, as the ring does.
      let pending = shards.length;
      const sum = new Float32Array(countsLength(shards[0]));
      let release: () => void;
      const all = new Promise<void>((r) => (release = r));
      const allreduceSum = async (_name: string, data: Float32Array) => {
        for (let i = 0; i < data.length; i++) sum[i] += data[i];
        if (--pending === 0) release();
        await all;
        return sum.slice();
      };
      const results = await Promise.all(shards.map((s) => sumAcrossRanks(s, allreduceSum)));
      for (const r of results) {
        assert.deepEqual(r.confusion.counts, single.confusion.counts, `${mode}, ${worldSize} ranks`);
        assert.equal(r.images, 7);
        assert.deepEqual(r.confusion.metrics(), single.confusion.metrics());
      }
    }
  }
  model.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensor leaked');
});

function countsLength(s: { confusion: { counts: Float64Array } }): number {
  return (s.confusion.counts.length + 2) * 5;
}

test('the CLI: slide with the whole image as the window equals whole; --gpus 3 equals one process; bad test settings exit 2', async () => {
  const whole = await runCli(['eval', '--checkpoint', best, '--json']);
  assert.equal(whole.code, 0, whole.stderr);
  const w = JSON.parse(whole.stdout);
  assert.equal(w.mIoU, summary.best!.value);
  const slide = await runCli(['eval', '--checkpoint', best, '--json', '--mode', 'slide', 'test.crop_size=[32,32]']);
  assert.equal(slide.code, 0, slide.stderr);
  const s = JSON.parse(slide.stdout);
  assert.deepEqual(s.classes, w.classes);
  assert.deepEqual(s.test, { mode: 'slide', crop_size: [32, 32], stride: [22, 22], scales: [1], flip: false });
  const text = await runCli(['eval', '--checkpoint', best, '--mode', 'multiscale', '--flip', 'test.scales=[0.75,1.25]']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /multiscale \[0\.75, 1\.25\] \(windows 24x24 stride 16x16\), flip/);
  assert.match(text.stdout, /^mean\s+[\d.]+\s+[\d.]+\s+aAcc [\d.]+%$/m);
  // --gpus 3: three processes (shards of 3, 2 and 2 images) over the cluster's ring; the same report.
  const gpus = await runCli(['eval', '--checkpoint', best, '--json', '--gpus', '3']);
  assert.equal(gpus.code, 0, gpus.stderr);
  const g = JSON.parse(gpus.stdout);
  assert.equal(g.processes, 3);
  assert.deepEqual([g.images, g.mIoU, g.mAcc, g.aAcc, g.classes], [w.images, w.mIoU, w.mAcc, w.aAcc, w.classes]);
  const stride = await runCli(['eval', '--checkpoint', best, '--mode', 'slide', 'test.stride=[30,30]']);
  assert.equal(stride.code, 2);
  assert.match(stride.stderr, /test\.stride: \[30,30\] is larger than the window \[24,24\]/);
  const crop = await runCli(['eval', '--checkpoint', best, '--gpus', '2', 'data.val.transforms=[{type: center_crop, size: [16,16]}, {type: normalize}]']);
  assert.equal(crop.code, 2);
  assert.match(crop.stderr, /data\.val\.transforms\[0\]\.type: center_crop is not supported by segdist eval and infer/);
});
