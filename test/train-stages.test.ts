import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadCheckpoint } from '../src/checkpoint/checkpoint-manager';
import { ConfigError } from '../src/config/config-error';
import { resolveConfig } from '../src/config/load-config';
import { buildModel } from '../src/models/build-model';
import { frozenStagePatterns, isFrozen, paramSettings, StagePlan } from '../src/train/stage-plan';
import { train, TrainingInterrupted } from '../src/train/train-run';
import { RecordingLogger } from './helpers/recording-logger';
import { Sgd } from '../src/train/sgd';
import { TrainMetrics } from '../src/train/train-metrics';
import { trainStep } from '../src/train/train-step';
import { tempDir, tinyOverrides } from './helpers/tiny-run';

const TWO_STAGES =
  'schedule.stages=[{name: head, epochs: 2, frozen: [backbone], lr: 0.1}, {name: finetune, lr: 0.02, param_groups: [{pattern: backbone, lr_mult: 0.1}]}]';

test('a stage plan: boundaries, the lr restarting per stage, multipliers and errors', async () => {
  await tf.setBackend('cpu');
  const cfg = resolveConfig({ overrides: ['train.epochs=5', TWO_STAGES, 'schedule.warmup_iters=0', 'schedule.min_lr=0'] });
  const plan = new StagePlan(cfg, 10);
  assert.deepEqual(plan.stages.map((s) => [s.name, s.start, s.end]), [['head', 0, 20], ['finetune', 20, 50]]);
  assert.equal(plan.stageAt(19).name, 'head');
  assert.equal(plan.stageAt(20).name, 'finetune');
  assert.equal(plan.learningRate(0), 0.1);
  assert.equal(plan.learningRate(20), 0.02);
  assert.ok(Math.abs(plan.learningRate(35) - 0.02 * Math.pow(0.5, 0.9)) < 1e-12);
  const [head, finetune] = plan.stages;
  assert.ok(isFrozen(head, 'backbone.layer1.0.conv1.weight'));
  assert.ok(!isFrozen(head, 'decode_head.conv_seg.weight'));
  assert.ok(!isFrozen(head, 'backbone2.weight'));
  const v4 = tf.variable(tf.zeros([1, 1, 1, 1]));
  const v1 = tf.variable(tf.zeros([1]));
  assert.deepEqual(paramSettings(finetune, 'backbone.conv1.weight', v4), { lrMult: 0.1, decayMult: 1 });
  assert.deepEqual(paramSettings(finetune, 'backbone.bn1.weight', v1), { lrMult: 0.1, decayMult: 0 });
  assert.deepEqual(paramSettings(finetune, 'decode_head.conv_seg.weight', v4), { lrMult: 1, decayMult: 1 });
  tf.dispose([v4, v1]);

  const bad = (stages: string, re: RegExp) => assert.throws(() => new StagePlan(resolveConfig({ overrides: ['train.epochs=5', `schedule.stages=${stages}`] }), 10), (e: unknown) => e instanceof ConfigError && re.test((e as Error).message));
  bad('[{epochs: 2}, {epochs: 2}]', /the stages last 40 iterations but train.epochs gives 50/);
  bad('[{name: a}, {epochs: 2}]', /schedule\.stages\[0\]: needs a length/);
  bad('[{epochs: 2, iters: 5}]', /schedule\.stages\[0\]: give epochs or iters, not both/);
  bad('[{epochs: 5}, {name: rest}]', /stages\[1\]: the earlier stages already fill train.epochs/);
  assert.throws(() => resolveConfig({ overrides: ['schedule.stages=[{frozn: [backbone]}]'] }), /schedule\.stages\[0\]\.frozn: unknown key \(did you mean schedule\.stages\[0\]\.frozen\?\)/);
});

test('frozen parameters get no gradient, no update and reach no gradient reducer', async () => {
  await tf.setBackend('cpu');
  const cfg = resolveConfig({ overrides: ['model.backbone.base_channels=4', 'model.head.channels=8', 'model.aux.channels=4', 'model.head.pool_scales=[1]'] });
  const model = buildModel(cfg.model, 3, 0);
  const all = model.namedParameters();
  const plan = new StagePlan(resolveConfig({ overrides: ['train.epochs=2', 'schedule.stages=[{epochs: 1, frozen: [backbone]}, {name: all}]'] }), 1);
  const trainable = all.filter(([n]) => !isFrozen(plan.stages[0], n));
  const sgd = new Sgd(all, { momentum: 0.9, weightDecay: 0.1, nesterov: false });
  const metrics = new TrainMetrics(3, 255);
  const before = new Map(all.map(([n, v]) => [n, Array.from(v.dataSync())]));
  const n = 2 * 16 * 16;
  const batch = { images: Float32Array.from({ length: n * 3 }, (_, i) => Math.sin(i)), labels: Int32Array.from({ length: n }, (_, i) => i % 3), n: 2, h: 16, w: 16 };
  const reduced: string[] = [];
  await trainStep(model, trainable, sgd, metrics, batch, {
    ignoreIndex: 255, auxWeight: 0.4, lr: 0.1, ctx: { training: true, seed: 1 },
    reduceGradients: (g) => {
      reduced.push(...g.keys());
      return g;
    },
  });
  assert.deepEqual(reduced, trainable.map(([name]) => name));
  assert.ok(reduced.every((name) => !name.startsWith('backbone.')));
  assert.ok(all.some(([name]) => name.startsWith('backbone.')));
  for (const [name, v] of all) {
    const same = Array.from(v.dataSync()).every((x, i) => x === before.get(name)![i]);
    assert.equal(same, name.startsWith('backbone.'), `${name} ${same ? 'unchanged' : 'changed'}`);
  }
  metrics.dispose();
  sgd.dispose();
  model.dispose();
});

test('two stages: the backbone stays at its init in stage 1, and resuming at the boundary is exact', async () => {
  const dataRoot = path.join(tempDir('stages-data'), 'synth');
  const straightDir = tempDir('stages-straight');
  const log = new RecordingLogger();
  const straight = await train(resolveConfig({ overrides: [...tinyOverrides(straightDir, dataRoot), TWO_STAGES] }), { logger: log });
  assert.ok(log.lines.some((l) => /^stage 1\/2 'head': iterations 0-7, \d+ of \d+ parameters trainable \(frozen: backbone\); lr default 1\.000e-2$/.test(l)), log.lines.join('\n'));
  assert.ok(log.lines.some((l) => /^stage 2\/2 'finetune': iterations 8-15, (\d+) of \1 parameters trainable; lr backbone 2\.000e-4, default 2\.000e-3$/.test(l)), log.lines.join('\n'));

  const dir = tempDir('stages-split');
  const controller = new AbortController();
  const cfg = resolveConfig({ overrides: [...tinyOverrides(dir, dataRoot), TWO_STAGES] });
  await assert.rejects(train(cfg, { stopSignal: controller.signal, logger: new RecordingLogger({ epoch: 2, controller }) }), TrainingInterrupted);
  const boundary = loadCheckpoint(path.join(dir, 'checkpoints', 'iter_0000008'));
  assert.equal(boundary.state.stage, 'finetune');
  const init = buildModel(cfg.model, 3, cfg.seed);
  for (const [name, v] of [...init.namedParameters(), ...init.namedBuffers()]) {
    const saved = boundary.model.get(name)!.data;
    const same = Array.from(v.dataSync()).every((x, i) => x === saved[i]);
    if (name.startsWith('backbone.')) assert.ok(same, `${name} moved in the frozen stage`);
    else if (name.endsWith('conv_seg.weight')) assert.ok(!same, `${name} did not train`);
  }
  init.dispose();

  const resumed = await train(cfg, { resume: 'auto', logger: new RecordingLogger() });
  const a = loadCheckpoint(straight.checkpoint!).model;
  const b = loadCheckpoint(resumed.checkpoint!).model;
  let max = 0;
  for (const [name, t] of a) t.data.forEach((x, i) => (max = Math.max(max, Math.abs(x - b.get(name)!.data[i]))));
  assert.ok(max <= 1e-6, `weights differ by ${max}`);
});

test('model.backbone.frozen_stages and norm_eval: the stem and stage 1 never move, backbone BNs keep their statistics; train() frees every tensor', async () => {
  const dataRoot = path.join(tempDir('frozen-stages-data'), 'synth');
  const dir = tempDir('frozen-stages');
  const cfg = resolveConfig({ overrides: [...tinyOverrides(dir, dataRoot), 'train.epochs=1', 'model.backbone.frozen_stages=1', 'model.backbone.norm_eval=true'] });
  const log = new RecordingLogger();
  await tf.setBackend('cpu');
  const tensors = tf.memory().numTensors;
  const result = await train(cfg, { logger: log });
  assert.equal(tf.memory().numTensors, tensors, 'train() left tensors allocated');
  assert.ok(log.lines.some((l) => /\(frozen: backbone\.conv1, backbone\.bn1, backbone\.layer1\)/.test(l)), log.lines.join('\n'));
  const trained = loadCheckpoint(result.checkpoint!).model;
  const init = buildModel(cfg.model, 3, cfg.seed);
  const moved = (name: string, v: tf.Variable) => {
    const saved = trained.get(name)!.data;
    return !Array.from(v.dataSync()).every((x, i) => x === saved[i]);
  };
  const frozen = /^backbone\.(conv1|bn1|layer1)\./;
  let checked = 0;
  for (const [name, v] of init.namedParameters()) {
    if (frozen.test(name)) assert.ok(!moved(name, v), `${name} trained though frozen_stages is 1`);
    else if (/\.(conv\d?|conv_seg)\.weight$|conv\d\.weight$/.test(name)) assert.ok(moved(name, v), `${name} did not train`);
    checked++;
  }
  for (const [name, v] of init.namedBuffers()) {
    // norm_eval: no backbone BN updates its running statistics; the heads' BNs do
    if (name.startsWith('backbone.')) assert.ok(!moved(name, v), `${name} changed under norm_eval`);
    else if (name.endsWith('running_mean')) assert.ok(moved(name, v), `${name} did not update`);
  }
  assert.ok(checked > 20);
  init.dispose();
});

test('frozen_stages names the stem and stages of each stem type', () => {
  for (const [stem, first] of [['v1b', ['backbone.conv1', 'backbone.bn1']], ['v1c', ['backbone.stem']], ['v1d', ['backbone.stem']]] as const) {
    const cfg = resolveConfig({ overrides: [`model.backbone.stem=${stem}`, 'model.backbone.base_channels=4', 'model.head.channels=4', 'model.aux.channels=4'] });
    const model = buildModel(cfg.model, 3, 0);
    const stages = model.backbone.stageModules;
    assert.deepEqual(frozenStagePatterns(stages, -1), []);
    assert.deepEqual(frozenStagePatterns(stages, 0), first);
    assert.deepEqual(frozenStagePatterns(stages, 4), [...first, 'backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4']);
    // every parameter of the backbone falls under exactly one stage
    for (const [name] of model.namedParameters().filter(([n]) => n.startsWith('backbone.'))) {
      assert.equal(stages.filter((mods) => mods.some((m) => name.startsWith(`backbone.${m}.`))).length, 1, name);
    }
    model.dispose();
  }
  assert.throws(() => resolveConfig({ overrides: ['model.backbone.frozen_stages=5'] }), /model\.backbone\.frozen_stages/);
});
