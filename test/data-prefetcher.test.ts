import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkTransforms } from '../src/data/augment-spec';
import { Batch, BatchLoader, type SamplePreparer, type SkipEvent } from '../src/data/batch-loader';
import { DataError } from '../src/data/data-error';
import { DistributedSampler } from '../src/data/distributed-sampler';
import { readFolderSplit, type SampleRef } from '../src/data/folder-dataset';
import { encodeIndexPng } from '../src/data/png-index';
import { DataPrefetcher, DataWorkerError, defaultWorkerCount } from '../src/data/prefetcher';
import { buildPreparer, type PreparerSpec } from '../src/data/preparer-spec';
import { synthesizeDataset } from '../src/data/synth-dataset';
import { resolveConfig } from '../src/config/load-config';
import { prepareData } from '../src/train/data-setup';

const DIST = path.resolve(__dirname, '..');
let root = '';
let refs: SampleRef[] = [];
let spec: PreparerSpec;

before(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'segdist-prefetch-'));
  await synthesizeDataset({ out: root, classes: 3, count: 13, size: [40, 48], seed: 2 });
  refs = await readFolderSplit({ root, split: 'train' });
  spec = {
    load: { numClasses: 3, ignoreIndex: 255 },
    context: { mean: [128, 128, 128], std: [64, 64, 64], ignoreIndex: 255, cropSize: [24, 32] },
    transforms: checkTransforms(
      [
        { type: 'random_resize', scale_range: [0.5, 2.0] },
        { type: 'random_rotate', degrees: 10 },
        { type: 'gaussian_blur' },
        { type: 'flip' },
        { type: 'pad' },
        { type: 'random_crop', cat_max_ratio: 0.75 },
        { type: 'photometric' },
        { type: 'normalize' },
      ],
      'test',
    ),
  };
});

after(() => rmSync(root, { recursive: true, force: true }));

function loader(samples: SampleRef[], prepare: SamplePreparer, o: { rank?: number; worldSize?: number; batchSize?: number; prefetch?: number; skipBad?: false | 'replace' | 'drop'; onSkip?: (e: SkipEvent) => void; dropLast?: boolean } = {}): BatchLoader {
  const sampler = new DistributedSampler({ size: samples.length, rank: o.rank ?? 0, worldSize: o.worldSize ?? 1, shuffle: true, seed: 7 });
  return new BatchLoader({ samples, sampler, batchSize: o.batchSize ?? 3, seed: 5, prefetch: o.prefetch ?? 2, prepare, skipBad: o.skipBad, onSkip: o.onSkip, dropLast: o.dropLast });
}

async function collect(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

test('default pool size: cores per trainer minus the compute thread, 1 to 4', () => {
  assert.equal(defaultWorkerCount(1, 2), 1);
  assert.equal(defaultWorkerCount(1, 16), 4);
  assert.equal(defaultWorkerCount(8, 16), 1);
  assert.equal(defaultWorkerCount(2, 8), 3);
});

test('batches are identical with 0, 1 and 3 threads, per rank, and resume skips decoding', async () => {
  const reference = await collect(loader(refs, buildPreparer(spec)).batches(1));
  assert.equal(reference.length, 4);
  for (const workers of [1, 3]) {
    const pool = new DataPrefetcher({ workers, pipelines: { train: spec } });
    try {
      assert.deepEqual(await collect(loader(refs, pool.preparer('train')).batches(1)), reference, `${workers} thread(s)`);
      // Rank 1 of 2 reads only its shard: the same as the in-process loader for that rank.
      const rank1 = await collect(loader(refs, pool.preparer('train'), { rank: 1, worldSize: 2, batchSize: 2 }).batches(1));
      assert.deepEqual(rank1, await collect(loader(refs, buildPreparer(spec), { rank: 1, worldSize: 2, batchSize: 2 }).batches(1)));
      // Resume at batch 2: the same batches as the uninterrupted pass, and only their samples decoded.
      const before = pool.completed.reduce((a, b) => a + b, 0);
      const resumed = await collect(loader(refs, pool.preparer('train')).batches(1, 2));
      assert.deepEqual(resumed, reference.slice(2));
      assert.equal(pool.completed.reduce((a, b) => a + b, 0) - before, 6);
      if (workers === 3) assert.ok(pool.completed.filter((n) => n > 0).length >= 2, `work spread over threads: ${pool.completed}`);
    } finally {
      await pool.close();
    }
  }
});

test('breaking off an epoch cancels its queued work; close ends every thread', async () => {
  const pool = new DataPrefetcher({ workers: 1, perWorker: 1, pipelines: { train: spec } });
  const l = loader(refs, pool.preparer('train'), { batchSize: 2, prefetch: 3 });
  for await (const b of l.batches(0)) {
    assert.equal(b.index, 0);
    assert.ok(pool.outstanding > 0, 'later batches are in flight while batch 0 is held');
    break;
  }
  assert.equal(pool.outstanding, 0, 'nothing is left pending after the break');
  await pool.close();
  await assert.rejects(pool.preparer('train')({ ref: refs[0], epoch: 0, position: 0, seed: 0 }), /closed/);
});

/** A copy of the synthetic set with some files broken. */
function brokenCopy(): { dir: string; refs: SampleRef[] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'segdist-bad-'));
  const copy = refs.map((r) => ({ ...r, image: path.join(dir, path.basename(r.image)), label: path.join(dir, path.basename(r.label)) }));
  copy.forEach((r, i) => {
    writeFileSync(r.image, readFileSync(refs[i].image));
    writeFileSync(r.label, readFileSync(refs[i].label));
  });
  writeFileSync(copy[1].image, readFileSync(copy[1].image).subarray(0, 200)); // truncated JPEG
  rmSync(copy[4].label); // label gone after the list was read
  writeFileSync(copy[6].label, encodeIndexPng({ width: 20, height: 40, data: new Uint8Array(800) })); // wrong size
  writeFileSync(copy[9].label, encodeIndexPng({ width: 48, height: 40, data: new Uint8Array(48 * 40).fill(9) })); // out of range
  return { dir, refs: copy };
}

test('bad input from a worker thread is a DataError naming the file; skip_bad replaces it in training and drops it in validation', async () => {
  const { dir, refs: bad } = brokenCopy();
  const pool = new DataPrefetcher({ workers: 2, pipelines: { train: spec } });
  try {
    const expected: Array<[number, RegExp]> = [
      [1, /\.jpg: cannot decode image/],
      [4, /\.png: cannot read label file/],
      [6, /label is 20x40 but its image .* is 48x40/],
      [9, /label value 9 at \(x=0, y=0\)/],
    ];
    for (const [i, re] of expected) {
      await assert.rejects(pool.preparer('train')({ ref: bad[i], epoch: 0, position: 0, seed: 1 }), (e: Error) => {
        assert.ok(e instanceof DataError, `${e.name}: ${e.message}`);
        assert.ok(e.file === bad[i].image || e.file === bad[i].label, e.file);
        assert.match(e.message, re);
        return true;
      });
    }
    // Without skip_bad the epoch stops at the first bad batch.
    await assert.rejects(collect(loader(bad, pool.preparer('train')).batches(0)), DataError);

    const skipped: string[] = [];
    const stats: number[] = [];
    const sampler = new DistributedSampler({ size: bad.length, rank: 0, worldSize: 1, shuffle: true, seed: 7 });
    const train = new BatchLoader({
      samples: bad, sampler, batchSize: 3, seed: 5, prepare: pool.preparer('train'), skipBad: 'replace',
      onSkip: (e) => skipped.push(e.id), onEpochEnd: (_e, s) => stats.push(s.skipped),
    });
    const batches = await collect(train.batches(0));
    assert.equal(batches.length, 4);
    assert.ok(batches.every((b) => b.n === 3), 'training batches stay full');
    const badIds = new Set([1, 4, 6, 9].map((i) => bad[i].id));
    assert.ok(batches.every((b) => b.ids.every((id) => !badIds.has(id))));
    assert.deepEqual([...new Set(skipped)].sort(), [...badIds].sort());
    assert.deepEqual(stats, [4]);
    // Deterministic: the same replacements whatever the pool.
    const local = new BatchLoader({ samples: bad, sampler, batchSize: 3, seed: 5, prepare: buildPreparer(spec), skipBad: 'replace' });
    assert.deepEqual(await collect(local.batches(0)), batches);

    const val = loader(bad, pool.preparer('train'), { skipBad: 'drop', dropLast: false });
    const vb = await collect(val.batches(0));
    assert.equal(vb.reduce((n, b) => n + b.n, 0), 13 - 4);
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a worker thread that dies is reported with the files it was on, and the pool stops', async () => {
  for (const faults of [{ crashOn: refs[3].id }, { exitOn: refs[3].id }]) {
    const pool = new DataPrefetcher({ workers: 2, pipelines: { train: spec }, faults });
    const l = loader(refs, pool.preparer('train'), { batchSize: 2, prefetch: 1 });
    const it = l.batches(0);
    await assert.rejects(collect(it), (e: Error) => {
      assert.ok(e instanceof DataWorkerError, `${e.name}: ${e.message}`);
      assert.ok(e.files.includes(refs[3].image), e.message);
      assert.match(e.message, new RegExp(`data worker \\d died while preparing .*${path.basename(refs[3].image)}.*: ${faults.crashOn ? 'injected crash' : 'exited with code 7'}`));
      return true;
    });
    await assert.rejects(pool.preparer('train')({ ref: refs[0], epoch: 0, position: 0, seed: 0 }), DataWorkerError);
    await pool.close();
  }
});

/** Runs a script in a child node process; resolves with its exit code, output and run time. */
function runScript(body: string, opts: { sigintAfterOutput?: RegExp; timeoutMs?: number } = {}): Promise<{ code: number | null; out: string; ms: number }> {
  const file = path.join(root, `child-${Math.random().toString(36).slice(2)}.js`);
  writeFileSync(file, body);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let sent = false;
    const onData = (d: Buffer) => {
      out += d.toString();
      if (opts.sigintAfterOutput && !sent && opts.sigintAfterOutput.test(out)) {
        sent = true;
        child.kill('SIGINT');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not exit in ${opts.timeoutMs ?? 20000} ms (hanging threads?)\n${out}`));
    }, opts.timeoutMs ?? 20000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, ms: Date.now() - started });
    });
  });
}

const CHILD_SETUP = (dist: string, rootDir: string, specJson: string) => `
const { DataPrefetcher } = require(${JSON.stringify(path.join(dist, 'src/data/prefetcher.js'))});
const { BatchLoader } = require(${JSON.stringify(path.join(dist, 'src/data/batch-loader.js'))});
const { DistributedSampler } = require(${JSON.stringify(path.join(dist, 'src/data/distributed-sampler.js'))});
const { readFolderSplit } = require(${JSON.stringify(path.join(dist, 'src/data/folder-dataset.js'))});
const spec = ${specJson};
async function setup() {
  const refs = await readFolderSplit({ root: ${JSON.stringify(rootDir)}, split: 'train' });
  const pool = new DataPrefetcher({ workers: 2, pipelines: { train: spec } });
  const sampler = new DistributedSampler({ size: refs.length, rank: 0, worldSize: 1, shuffle: true, seed: 1 });
  const loader = new BatchLoader({ samples: refs, sampler, batchSize: 2, seed: 1, prefetch: 3, prepare: pool.preparer('train') });
  return { pool, loader };
}
`;

test('no hanging threads: a process exits after its epochs without close(), and on SIGINT mid-epoch', async () => {
  const setup = CHILD_SETUP(DIST, root, JSON.stringify(spec));
  const plain = await runScript(`${setup}
(async () => {
  const { loader } = await setup();
  let n = 0;
  for (const epoch of [0, 1]) for await (const b of loader.batches(epoch)) n += b.n;
  console.log('samples', n);
})();`);
  assert.equal(plain.code, 0, plain.out);
  assert.match(plain.out, /samples 24/);

  const interrupted = await runScript(`${setup}
(async () => {
  const { pool, loader } = await setup();
  let stop = false;
  process.on('SIGINT', () => { stop = true; });
  for (let epoch = 0; !stop; epoch++) {
    for await (const b of loader.batches(epoch)) {
      console.log('batch', epoch, b.index);
      await new Promise((r) => setTimeout(r, 50)); // a slow "training step"
      if (stop) break;
    }
  }
  await pool.close();
  console.log('closed');
})();`, { sigintAfterOutput: /batch 0 2/ });
  assert.equal(interrupted.code, 0, interrupted.out);
  assert.match(interrupted.out, /closed/);
});

test('data.skip_bad through the config: missing files are left out at start, bad files skipped, both counted per epoch', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'segdist-skip-'));
  try {
    await synthesizeDataset({ out: dir, classes: 3, count: { train: 9, val: 3 }, size: [32, 32], seed: 4 });
    const stems = readFileSync(path.join(dir, 'train.txt'), 'utf8').trim().split('\n');
    rmSync(path.join(dir, 'labels', 'train', `${stems[2]}.png`));
    const jpg = path.join(dir, 'images', 'train', `${stems[5]}.jpg`);
    writeFileSync(jpg, readFileSync(jpg).subarray(0, 100));
    const over = [`data.root=${dir}`, 'data.synthesize=false', 'data.num_classes=3', 'data.train.batch_size=2', 'data.train.crop_size=[16,16]', 'data.workers=1'];
    await assert.rejects(prepareData(resolveConfig({ overrides: over }), () => undefined), /train\.txt:3: label for stem "\w+" not found/);
    const lines: string[] = [];
    const data = await prepareData(resolveConfig({ overrides: [...over, 'data.skip_bad=true'] }), (m) => lines.push(m));
    try {
      assert.equal(data.trainSize, 8);
      const batches = await collect(data.train.batches(0));
      assert.equal(batches.length, 4);
      assert.ok(batches.every((b) => b.n === 2 && !b.ids.includes(stems[5])));
      const text = lines.join('\n');
      assert.match(text, /warning: data\.skip_bad: leaving out a listed train sample: .*train\.txt:3: label for stem/);
      assert.match(text, new RegExp(`warning: data\\.skip_bad: skipping a bad train sample \\(epoch 1\\): .*${stems[5]}\\.jpg: cannot decode image`));
      assert.match(text, /data: epoch 1: 1 bad train sample\(s\) skipped, 1 left out of the list for missing files \(data\.skip_bad\)/);
    } finally {
      await data.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
