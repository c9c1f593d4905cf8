import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI, REPO, runCli, tempDir, tinyOverrides } from './helpers/tiny-run';

test('on a terminal, each epoch gets a progress bar and other lines print above it', () => {
  const dir = tempDir('tty');
  const args = ['train', ...tinyOverrides(dir), 'train.epochs=2'].map((a) => `'${a}'`).join(' ');
  // `script` runs the command in a pseudo-terminal, as a person's shell would.
  const r = spawnSync('script', ['-qec', `${process.execPath} ${CLI} ${args}`, '/dev/null'], { cwd: REPO, encoding: 'utf8', timeout: 120000, env: { ...process.env, COLUMNS: '160' } });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  assert.match(out, /epoch 1\/2 \[[█░]+\] 4\/4 loss \d/);
  assert.match(out, /epoch 2\/2 \[[█░]+\] 4\/4 loss \d/);
  assert.match(out, /validation after epoch 2 \(4 images\)/);
  assert.doesNotMatch(out, /^epoch 1\/2 iter 2\/4/m, 'no plain progress lines on a terminal');
});

test('without a terminal, logging steps print plain progress lines', async () => {
  const dir = tempDir('plain');
  const r = await runCli(['train', ...tinyOverrides(dir), 'train.epochs=1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^epoch 1\/1 iter 2\/4 \(2\) loss \d+\.\d{4} lr \S+ aAcc [\d.]+% mIoU [\d.]+% time [\d.]+s data [\d.]+s eta \S+$/m);
  assert.doesNotMatch(r.stdout, /[█░]/);
});
