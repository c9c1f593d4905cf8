import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Batch, BatchLoader, SampleJob } from '../src/data/batch-loader';
import { DistributedSampler } from '../src/data/distributed-sampler';
import { readFolderSplit, SampleRef } from '../src/data/folder-dataset';
import { loadSample, LoadedSample } from '../src/data/load-sample';
import { synthesizeDataset } from '../src/data/synth-dataset';
import { trainTransform, Transform } from '../src/data/transforms';

const H = 2;
const W = 3;
const refs: SampleRef[] = Array.from({ length: 11 }, (_, i) => ({ id: `s${i}`, image: `/img/${i}.jpg`, label: `/lab/${i}.png` }));

/** In-memory "decode": pixel values carry the sample number. */
async function fakeLoad(ref: SampleRef): Promise<LoadedSample> {
  const n = Number(ref.id.slice(1));
  await new Promise((r) => setTimeout(r, (n * 7) % 5)); // finish out of order
  return { image: new Uint8Array(H * W * 3).fill(n), label: new Uint8Array(H * W).fill(n % 4), height: H, width: W };
}

/** Copies the sample and stamps two rng draws into it, so augmentation randomness is visible. */
const stampTransform: Transform = (s, rng) => {
  const image = Float32Array.from(s.image);
  image[0] = rng.next();
  image[1] = rng.next();
  return { image, label: Int32Array.from(s.label), height: s.height, width: s.width };
};

function loader(opts: { batchSize: number; prefetch: number; rank?: number; worldSize?: number; dropLast?: boolean }): BatchLoader {
  const sampler = new DistributedSampler({ size: refs.length, rank: opts.rank ?? 0, worldSize: opts.worldSize ?? 1, shuffle: true, seed: 4 });
  return new BatchLoader({ samples: refs, sampler, batchSize: opts.batchSize, seed: 9, prefetch: opts.prefetch, dropLast: opts.dropLast, load: fakeLoad, transform: stampTransform });
}

async function collect(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

/** Per-sample (id -> image values) from a list of batches. */
function bySample(batches: Batch[]): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const b of batches) b.ids.forEach((id, i) => m.set(id, [...b.images.subarray(i * H * W * 3, (i + 1) * H * W * 3)]));
  return m;
}

test('batches are NHWC / NHW with ids, index and the last incomplete batch dropped by default', async () => {
  const l = loader({ batchSize: 3, prefetch: 2 });
  assert.equal(l.numBatches(), 3);
  const batches = await collect(l.batches(0));
  assert.deepEqual(batches.map((b) => b.index), [0, 1, 2]);
  for (const b of batches) {
    assert.deepEqual([b.n, b.h, b.w, b.images.length, b.labels.length], [3, H, W, 3 * H * W * 3, 3 * H * W]);
    b.ids.forEach((id, i) => assert.equal(b.labels[i * H * W], Number(id.slice(1)) % 4));
  }
  const all = await collect(loader({ batchSize: 3, prefetch: 2, dropLast: false }).batches(0));
  assert.deepEqual(all.map((b) => b.n), [3, 3, 3, 2]);
  assert.equal(new Set(all.flatMap((b) => b.ids)).size, 11);
});

test('resume: startBatch k yields exactly batches k.. of a full pass, without loading earlier samples', async () => {
  const full = await collect(loader({ batchSize: 2, prefetch: 1 }).batches(3));
  for (const k of [0, 2, 4, 5]) {
    const loaded: string[] = [];
    const sampler = new DistributedSampler({ size: refs.length, rank: 0, worldSize: 1, shuffle: true, seed: 4 });
    const resumed = new BatchLoader({
      samples: refs,
      sampler,
      batchSize: 2,
      seed: 9,
      prefetch: 3,
      load: (ref) => {
        loaded.push(ref.id);
        return fakeLoad(ref);
      },
      transform: stampTransform,
    });
    const rest = await collect(resumed.batches(3, k));
    assert.deepEqual(rest, full.slice(k));
    assert.deepEqual(sortedIds(loaded), sortedIds(full.slice(k).flatMap((b) => b.ids)));
  }
});

const sortedIds = (ids: string[]): string[] => [...ids].sort();

test('a sample gets the same augmentation whatever the batch size, prefetch depth or world size', async () => {
  const reference = bySample(await collect(loader({ batchSize: 1, prefetch: 0, dropLast: false }).batches(2)));
  const variants = [
    await collect(loader({ batchSize: 4, prefetch: 3, dropLast: false }).batches(2)),
    // 11 samples on 1 rank vs 12 positions on 2 ranks: the wrapped 12th position gets draws of its own.
    ...(await Promise.all([0, 1].map((rank) => collect(loader({ batchSize: 2, prefetch: 1, rank, worldSize: 2, dropLast: false }).batches(2))))),
  ];
  const worldOf2 = [...variants[1], ...variants[2]];
  for (const [id, values] of bySample([...variants[0]])) assert.deepEqual(values, reference.get(id), id);
  const seen = bySample(worldOf2);
  assert.equal(seen.size, 11);
  for (const [id, values] of reference) {
    if (seen.get(id)?.[0] !== values[0]) {
      // Only the sample that appears twice (once as padding) may differ, in the copy we kept last.
      const dup = worldOf2.flatMap((b) => b.ids).filter((x) => x === id).length;
      assert.equal(dup, 2, `${id} differs but appears ${dup} time(s)`);
    }
  }
  // Different epochs draw differently.
  const other = bySample(await collect(loader({ batchSize: 1, prefetch: 0, dropLast: false }).batches(3)));
  assert.notDeepEqual(other.get('s0'), reference.get('s0'));
});

test('prefetch bounds the batches in flight', async () => {
  for (const prefetch of [0, 2]) {
    let inFlight = 0;
    let peak = 0;
    let started = 0;
    const prepare = async (job: SampleJob): Promise<{ image: Float32Array; label: Int32Array; height: number; width: number }> => {
      started++;
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 2));
      inFlight--;
      return { image: new Float32Array(3).fill(job.position), label: new Int32Array(1), height: 1, width: 1 };
    };
    const sampler = new DistributedSampler({ size: refs.length, rank: 0, worldSize: 1, shuffle: false, seed: 0 });
    const l = new BatchLoader({ samples: refs, sampler, batchSize: 2, seed: 0, prefetch, prepare });
    for await (const b of l.batches(0)) {
      assert.equal(b.images[0], b.index * 2); // positions in order with shuffle off
      await new Promise((r) => setTimeout(r, 5)); // a slow consumer lets the prefetcher run ahead
      // While batch k is held, nothing beyond batch k + prefetch has been started.
      assert.ok(started <= Math.min(11, (b.index + 1 + prefetch) * 2), `prefetch ${prefetch}, batch ${b.index}: ${started} started`);
    }
    assert.equal(peak, (prefetch + 1) * 2, `prefetch ${prefetch}`);
  }
});

test('a failing sample surfaces at its batch; earlier batches arrive and nothing goes unhandled', async () => {
  const sampler = new DistributedSampler({ size: refs.length, rank: 0, worldSize: 1, shuffle: false, seed: 0 });
  const l = new BatchLoader({
    samples: refs,
    sampler,
    batchSize: 2,
    seed: 0,
    prefetch: 4,
    load: (ref) => (ref.id === 's5' ? Promise.reject(new Error(`${ref.image}: cannot decode image`)) : fakeLoad(ref)),
    transform: stampTransform,
  });
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const b of l.batches(0)) got.push(b.index);
  }, /\/img\/5\.jpg: cannot decode image/);
  assert.deepEqual(got, [0, 1]);
});

test('mixed sample sizes in one batch name the images; bad options are rejected', async () => {
  const sampler = new DistributedSampler({ size: 2, rank: 0, worldSize: 1, shuffle: false, seed: 0 });
  const two = refs.slice(0, 2);
  const prepare = async (job: SampleJob) => {
    const w = job.position + 1;
    return { image: new Float32Array(3 * w), label: new Int32Array(w), height: 1, width: w };
  };
  const l = new BatchLoader({ samples: two, sampler, batchSize: 2, seed: 0, prepare });
  await assert.rejects(collect(l.batches(0)), /batch 0 mixes sizes: \/img\/0\.jpg is 1x1 but \/img\/1\.jpg is 1x2/);
  assert.throws(() => new BatchLoader({ samples: refs, sampler, batchSize: 2, seed: 0, prepare }), /sampler covers 2 samples but 11/);
  assert.throws(() => new BatchLoader({ samples: two, sampler, batchSize: 0, seed: 0, prepare }), /batchSize/);
  assert.throws(() => l.batches(0, 5), /startBatch 5 is outside 0\.\.1/);
});

test('end to end on a tiny synthetic dataset: folder reader, loadSample, train transform', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'segdist-loader-'));
  try {
    await synthesizeDataset({ out: root, classes: 3, count: 5, size: [24, 20], seed: 1 });
    const samples = await readFolderSplit({ root, split: 'train' });
    const sampler = new DistributedSampler({ size: samples.length, rank: 0, worldSize: 1, shuffle: true, seed: 1 });
    const transform = trainTransform({ cropSize: [16, 16], scaleRange: [0.75, 1.25], mean: [128, 128, 128], std: [64, 64, 64], ignoreIndex: 255 });
    const l = new BatchLoader({ samples, sampler, batchSize: 2, seed: 1, load: (ref) => loadSample(ref, { numClasses: 3, ignoreIndex: 255 }), transform });
    const batches = await collect(l.batches(0));
    assert.equal(batches.length, 2);
    for (const b of batches) {
      assert.deepEqual([b.n, b.h, b.w], [2, 16, 16]);
      assert.ok(b.labels.every((v) => v === 255 || (v >= 0 && v < 3)));
      assert.ok(b.images.every((v) => Number.isFinite(v) && Math.abs(v) <= 2.01));
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
