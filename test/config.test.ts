import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../src/config/config-error';
import { CONFIG_SCHEMA } from '../src/config/config-schema';
import { parseOverrides, resolveConfig } from '../src/config/load-config';
import { defaultsOf } from '../src/config/schema';
import { configReference } from '../src/config/config-reference';
import { buildModel } from '../src/models/build-model';
import * as tf from '@tensorflow/tfjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-config-'));
const write = (name: string, text: string) => {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
};
const fails = (fn: () => unknown, pattern: RegExp) => assert.throws(fn, (e: unknown) => e instanceof ConfigError && pattern.test((e as Error).message));

test('defaults < file < overrides', () => {
  const f = write('a.yaml', 'optimizer:\n  lr: 0.5\n  momentum: 0.8\ntrain:\n  epochs: 3\n');
  const cfg = resolveConfig({ file: f, overrides: ['optimizer.lr=0.25', 'data.train.crop_size=[64, 96]', 'model.aux.enabled=false'] });
  assert.equal(cfg.optimizer.lr, 0.25);
  assert.equal(cfg.optimizer.momentum, 0.8);
  assert.equal(cfg.optimizer.weight_decay, 1e-4);
  assert.equal(cfg.train.epochs, 3);
  assert.deepEqual(cfg.data.train.crop_size, [64, 96]);
  assert.equal(cfg.model.aux.enabled, false);
});

test('extends one level, the child wins, lists replace', () => {
  write('base.yaml', 'optimizer:\n  lr: 0.1\nmodel:\n  head:\n    pool_scales: [1, 2]\n    channels: 64\n');
  const child = write('child.yaml', 'extends: base.yaml\nmodel:\n  head:\n    pool_scales: [3]\n');
  const cfg = resolveConfig({ file: child });
  assert.equal(cfg.optimizer.lr, 0.1);
  assert.deepEqual(cfg.model.head.pool_scales, [3]);
  assert.equal(cfg.model.head.channels, 64);
  write('grand.yaml', 'extends: child.yaml\n');
  fails(() => resolveConfig({ file: path.join(tmp, 'grand.yaml') }), /extends is one level only/);
  fails(() => resolveConfig({ file: write('dangling.yaml', 'extends: nowhere.yaml\n') }), /nowhere\.yaml: file not found \(extended by/);
});

test('a missing file names it', () => {
  fails(() => resolveConfig({ file: path.join(tmp, 'missing.yaml') }), /missing\.yaml: file not found/);
});

test('malformed YAML gives line and column', () => {
  const f = write('bad.yaml', 'optimizer:\n  lr: 0.1\n   momentum: [0.9\n');
  fails(() => resolveConfig({ file: f }), /bad\.yaml:3:\d+: malformed YAML/);
  fails(() => resolveConfig({ file: write('list.yaml', '- 1\n- 2\n') }), /top level must be a mapping/);
});

test('unknown keys suggest the closest known key, with the file', () => {
  const f = write('typo.yaml', 'optimizer:\n  momentun: 0.9\n');
  fails(() => resolveConfig({ file: f }), /typo\.yaml: optimizer\.momentun: unknown key \(did you mean optimizer\.momentum\?\)/);
  fails(() => resolveConfig({ overrides: ['trian.epochs=3'] }), /trian: unknown key \(did you mean train\?\)/);
});

test('wrong types and ranges name the key, expected and got', () => {
  fails(() => resolveConfig({ overrides: ['train.epochs=many'] }), /train\.epochs: expected a number, got string \("many"\)/);
  fails(() => resolveConfig({ overrides: ['train.epochs=2.5'] }), /train\.epochs: expected an integer, got 2\.5/);
  fails(() => resolveConfig({ overrides: ['optimizer.momentum=1.5'] }), /optimizer\.momentum: 1\.5 is out of range \(maximum 1\)/);
  fails(() => resolveConfig({ overrides: ['backend=tpu'] }), /backend: 'tpu' is not one of auto, tensorflow-gpu, tensorflow, wasm, cpu/);
  fails(() => resolveConfig({ overrides: ['data.train.crop_size=[1,2,3]'] }), /data\.train\.crop_size: expected at most 2 items, got 3/);
  fails(() => resolveConfig({ file: write('sec.yaml', 'model: 3\n') }), /model: expected a mapping, got number/);
});

test('bad override syntax is rejected with an example', () => {
  fails(() => parseOverrides(['optimizer.lr']), /expected key\.path=value/);
  fails(() => parseOverrides(['=3']), /expected key\.path=value/);
  fails(() => parseOverrides(['optimizer..lr=3']), /is not a key path/);
  fails(() => parseOverrides(['optimizer.lr=[1, 2']), /not valid YAML/);
});

test('the reference documents every key and the defaults validate', () => {
  const ref = configReference();
  for (const key of ['optimizer.lr', 'model.backbone.depth', 'checkpoint.monitor', 'data.train.crop_size']) assert.match(ref, new RegExp('`' + key.replace(/\./g, '\\.') + '`'));
  const d = defaultsOf(CONFIG_SCHEMA) as Record<string, unknown>;
  assert.deepEqual(resolveConfig({}), d);
});

test('every shipped config validates, and the synthetic one is the embedded default', async () => {
  await tf.setBackend('cpu');
  const dir = path.resolve(__dirname, '../../configs');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 3);
  for (const f of files) {
    // every shipped config resolves and its model builds (names and shapes only: no weights drawn)
    const cfg = resolveConfig({ file: path.join(dir, f) });
    const model = buildModel(cfg.model, cfg.data.num_classes, cfg.seed, { initialize: false });
    assert.ok(model.numParameters() > 0, f);
    model.dispose();
  }
  assert.deepEqual(resolveConfig({ file: path.join(dir, 'pspnet_r18_synthetic.yaml') }), resolveConfig({}));
  const camvid = resolveConfig({ file: path.join(dir, 'pspnet_r18_camvid.yaml') });
  assert.equal(camvid.data.num_classes, 11);
  assert.deepEqual(camvid.data.label_map, { 11: 255 });
  assert.equal(camvid.model.backbone.depth, 18);
});
