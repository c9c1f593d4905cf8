import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { synthesizeDataset } from '../src/data/synth-dataset';
import { encodeIndexPng } from '../src/data/png-index';
import { runCli, tempDir, tinyOverrides } from './helpers/tiny-run';

let pristine: string;

before(async () => {
  pristine = path.join(tempDir('bad-input'), 'synth');
  await synthesizeDataset({ out: pristine, classes: 3, count: { train: 4, val: 2 }, size: [32, 32], seed: 1 });
});

/** A copy of the pristine dataset, broken by `mutate`, and the overrides of a run on it. */
function brokenDataset(mutate: (root: string, firstTrainStem: string) => void): { args: string[]; workDir: string; stem: string } {
  const workDir = tempDir('bad-run');
  const root = path.join(workDir, 'data');
  fs.cpSync(pristine, root, { recursive: true });
  const stem = fs.readFileSync(path.join(root, 'train.txt'), 'utf8').split('\n')[0];
  mutate(root, stem);
  return { args: ['train', ...tinyOverrides(workDir, root), 'data.synthesize=false', 'train.epochs=1'], workDir, stem };
}

function assertNothingSaved(workDir: string): void {
  const dir = path.join(workDir, 'checkpoints');
  const entries = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  assert.deepEqual(entries, [], `no checkpoint may be left behind, found ${entries.join(', ')}`);
}

async function expectFailure(args: string[], exitCode: number, message: RegExp, workDir?: string): Promise<void> {
  const r = await runCli(args);
  assert.equal(r.code, exitCode, `exit code; stderr:\n${r.stderr}`);
  assert.match(r.stderr, message);
  if (workDir) assertNothingSaved(workDir);
}

test('config problems exit 2 naming the file or key', async () => {
  const dir = tempDir('bad-config');
  await expectFailure(['train', '--config', path.join(dir, 'missing.yaml')], 2, /missing\.yaml: file not found/);
  fs.writeFileSync(path.join(dir, 'bad.yaml'), 'train:\n  epochs: [1\n');
  await expectFailure(['train', '--config', path.join(dir, 'bad.yaml')], 2, /bad\.yaml:3:1: malformed YAML/);
  fs.writeFileSync(path.join(dir, 'typo.yaml'), 'optimizer:\n  weight_decai: 0.1\n');
  await expectFailure(['train', '--config', path.join(dir, 'typo.yaml')], 2, /typo\.yaml: optimizer\.weight_decai: unknown key \(did you mean optimizer\.weight_decay\?\)/);
  await expectFailure(['train', 'optimizer.lr'], 2, /override 'optimizer\.lr': expected key\.path=value/);
  await expectFailure(['train', 'train.epochs=0'], 2, /train\.epochs: 0 is out of range \(minimum 1\)/);
});

test('a missing dataset folder exits 3 naming it', async () => {
  const workDir = tempDir('no-data');
  const missing = path.join(workDir, 'nowhere');
  await expectFailure(['train', ...tinyOverrides(workDir, missing), 'data.synthesize=false'], 3, new RegExp(`${missing}: dataset root folder does not exist`), workDir);
});

test('a split list naming a missing image exits 3 naming the file and list line', async () => {
  const { args, workDir } = brokenDataset((root, stem) => fs.rmSync(path.join(root, 'images', 'train', `${stem}.jpg`)));
  await expectFailure(args, 3, /train\.txt:1: image for stem "\w+" not found/, workDir);
});

test('an image and label of different sizes exit 3 naming the label', async () => {
  const { args, workDir, stem } = brokenDataset((root, s) =>
    fs.writeFileSync(path.join(root, 'labels', 'train', `${s}.png`), encodeIndexPng({ width: 16, height: 32, data: new Uint8Array(16 * 32) })));
  await expectFailure(args, 3, new RegExp(`${stem}\\.png: .*16x32.*32x32|${stem}\\.png: .*size`), workDir);
});

test('a label value >= classes that is not the ignore index exits 3 naming the file and value', async () => {
  const { args, workDir, stem } = brokenDataset((root, s) =>
    fs.writeFileSync(path.join(root, 'labels', 'train', `${s}.png`), encodeIndexPng({ width: 32, height: 32, data: new Uint8Array(32 * 32).fill(7) })));
  await expectFailure(args, 3, new RegExp(`${stem}\\.png: .*7`), workDir);
});

test('a corrupt image exits 3 naming it', async () => {
  const { args, workDir } = brokenDataset((root, stem) => {
    const f = path.join(root, 'images', 'train', `${stem}.jpg`);
    fs.writeFileSync(f, fs.readFileSync(f).subarray(0, 40));
  });
  await expectFailure(args, 3, /\.jpg: /, workDir);
});

test('a non-image file with an image name exits 3 naming it', async () => {
  const { args, workDir } = brokenDataset((root, stem) => fs.writeFileSync(path.join(root, 'images', 'train', `${stem}.jpg`), 'not an image at all'));
  await expectFailure(args, 3, /\.jpg: /, workDir);
  // sharp is the decoder under test here: make sure it really rejects such a file on its own.
  await assert.rejects(sharp(Buffer.from('not an image at all')).raw().toBuffer());
});
