// `segdist model summary`: rows from a real forward pass (output shapes per module), parameter counts
// per subtree, and totals equal to the model's own counts, the first stage's frozen ones excluded
// from the trainable total.
import { after, before, test } from 'node:test';
import * as fs from 'node:fs';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { resolveConfig } from '../src/config/load-config';
import { buildModel } from '../src/models/build-model';
import { formatSummary, summarizeModel } from '../src/models/model-summary';
import { runCli, tempDir, tinyOverrides } from './helpers/tiny-run';

const dir = tempDir('model-summary');
const OVERRIDES = tinyOverrides(dir);
const sizeOf = (vs: Array<[string, tf.Variable]>) => vs.reduce((n, [, v]) => n + v.size, 0);

before(async () => {
  await tf.setBackend('cpu');
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('summarizeModel: shapes of a real eval forward, the aux head included, counts per subtree, nothing leaked', () => {
  const cfg = resolveConfig({ overrides: OVERRIDES });
  const model = buildModel(cfg.model, cfg.data.num_classes, cfg.seed);
  try {
    const before = tf.memory().numTensors;
    const s = summarizeModel(model, { inputSize: [32, 40], isTrainable: (n) => !n.startsWith('backbone.') });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(!Object.prototype.hasOwnProperty.call(model.backbone, 'forward'), 'the forward hook was not removed');
    const row = new Map(s.rows.map((r) => [r.name, r]));
    assert.deepEqual(row.get('')!.outputShapes, [[1, 32, 40, 3]]);
    // ResNet-18 at base 4, output stride 8: stride 4 then three stages at stride 8.
    assert.deepEqual(row.get('backbone')!.outputShapes, [[1, 8, 10, 4], [1, 4, 5, 8], [1, 4, 5, 16], [1, 4, 5, 32]]);
    assert.deepEqual(row.get('backbone.conv1')!.outputShapes, [[1, 16, 20, 4]]);
    assert.deepEqual(row.get('decode_head')!.outputShapes, [[1, 4, 5, 3]]);
    assert.deepEqual(row.get('decode_head.psp_modules.1.0')!.outputShapes, [[1, 2, 2, 32]]);
    assert.deepEqual(row.get('auxiliary_head')!.outputShapes, [[1, 4, 5, 3]]);
    assert.equal(row.get('decode_head.psp_modules')!.outputShapes, null); // a ModuleList has no forward
    assert.equal(row.get('backbone.conv1')!.params, 7 * 7 * 3 * 4);
    assert.equal(row.get('backbone')!.params, model.backbone.numParameters());
    assert.equal(row.get('')!.params, model.numParameters());
    assert.equal(s.parameters, model.numParameters());
    assert.equal(s.trainable, model.numParameters() - model.backbone.numParameters());
    assert.equal(s.buffers, sizeOf(model.namedBuffers()));
    const text = formatSummary(s, 1);
    assert.ok(text.some((l) => /^ {2}backbone \(ResNet\) +\[1, 8, 10, 4\] \[1, 4, 5, 8\]/.test(l)), text.join('\n'));
    assert.ok(!text.some((l) => l.includes('backbone.layer1')), 'depth 1 lists only the top-level modules');
  } finally {
    model.dispose();
  }
});

test('segdist model summary: the table and totals of the configured model, frozen_stages and the first stage counted out', async () => {
  // frozen_stages 1 freezes the stem and layer1 in every stage; the first stage adds the pyramid.
  const frozenHere = ['model.backbone.frozen_stages=1', 'schedule.stages=[{name: head, epochs: 1, frozen: [decode_head.psp_modules]}, {name: all}]'];
  const r = await runCli(['model', 'summary', '--input-size', '32,32', '--depth', '2', ...OVERRIDES, ...frozenHere]);
  assert.equal(r.code, 0, r.stderr);
  const cfg = resolveConfig({ overrides: OVERRIDES });
  const model = buildModel(cfg.model, cfg.data.num_classes, cfg.seed, { initialize: false });
  try {
    const total = model.numParameters();
    const frozen = sizeOf(model.namedParameters().filter(([n]) => /^(backbone\.(conv1|bn1|layer1)|decode_head\.psp_modules)\./.test(n)));
    assert.ok(frozen > 0 && frozen < model.backbone.numParameters());
    const fmt = (n: number) => n.toLocaleString('en-US');
    assert.match(r.stdout, /^EncoderDecoder +\[1, 32, 32, 3\] +[\d,]+$/m);
    assert.match(r.stdout, /^ {4}backbone\.layer4 \(Sequential\) +\[1, 4, 4, 32\] +[\d,]+$/m);
    assert.match(r.stdout, /^ {2}auxiliary_head \(FCNHead\) +\[1, 4, 4, 3\] +[\d,]+$/m);
    assert.ok(r.stdout.includes(`Total parameters: ${fmt(total)} (`), r.stdout);
    assert.ok(r.stdout.includes(`Trainable parameters: ${fmt(total - frozen)} (${fmt(frozen)} frozen in the first stage)`), r.stdout);
    assert.ok(r.stdout.includes(`Buffers: ${fmt(sizeOf(model.namedBuffers()))} (BN running statistics)`), r.stdout);
  } finally {
    model.dispose();
  }
  const bad = await runCli(['model', 'summary', '--input-size', '32x', ...OVERRIDES]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--input-size: expected HxW or H,W/);
});
