import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DistributedSampler } from '../src/data/distributed-sampler';

function ranks(size: number, worldSize: number, extra: { shuffle?: boolean; padding?: boolean; dropLast?: boolean; seed?: number } = {}): DistributedSampler[] {
  return Array.from(
    { length: worldSize },
    (_, rank) => new DistributedSampler({ size, rank, worldSize, shuffle: extra.shuffle ?? true, seed: extra.seed ?? 3, padding: extra.padding, dropLast: extra.dropLast }),
  );
}

const sorted = (a: number[]): number[] => [...a].sort((x, y) => x - y);
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

test('padded shards: equal length, disjoint positions, together cover every sample', () => {
  for (const size of [1, 3, 7, 10, 12]) {
    for (const worldSize of [1, 2, 3, 4]) {
      const samplers = ranks(size, worldSize);
      const shards = samplers.map((s) => s.indices(5));
      const len = Math.ceil(size / worldSize);
      for (const [r, shard] of shards.entries()) {
        assert.equal(shard.length, len, `size ${size} world ${worldSize} rank ${r}`);
        assert.equal(samplers[r].numSamples, len);
      }
      const all = shards.flat();
      assert.deepEqual([...new Set(all)].sort((a, b) => a - b), range(size), `size ${size} world ${worldSize}`);
      // Padding repeats only as many samples as needed to reach a multiple of worldSize.
      assert.equal(all.length - size, len * worldSize - size);
      // Interleaving the shards rebuilds the one global order every rank agrees on.
      const order = samplers[0].globalOrder(5);
      for (const [r, shard] of shards.entries()) shard.forEach((idx, k) => assert.equal(order[k * worldSize + r], idx));
    }
  }
});

test('no padding (evaluation): every sample exactly once, shard sizes differ by at most one', () => {
  for (const size of [1, 5, 10, 11]) {
    for (const worldSize of [1, 2, 3, 4]) {
      const samplers = ranks(size, worldSize, { padding: false });
      const shards = samplers.map((s) => s.indices(0));
      assert.deepEqual(sorted(shards.flat()), range(size), `size ${size} world ${worldSize}`);
      const counts = samplers.map((s) => s.numSamples);
      assert.deepEqual(counts, shards.map((s) => s.length));
      assert.deepEqual(counts, range(worldSize).map((r) => samplers[0].countFor(r)));
      assert.ok(Math.max(...counts) - Math.min(...counts) <= 1);
    }
  }
});

test('dropLast cuts the tail to a multiple of worldSize', () => {
  const samplers = ranks(10, 4, { dropLast: true });
  const shards = samplers.map((s) => s.indices(1));
  assert.ok(shards.every((s) => s.length === 2));
  assert.equal(new Set(shards.flat()).size, 8);
  assert.throws(() => new DistributedSampler({ size: 3, rank: 0, worldSize: 4, shuffle: false, seed: 0, dropLast: true }), /leaves no samples/);
  assert.throws(() => new DistributedSampler({ size: 3, rank: 0, worldSize: 2, shuffle: false, seed: 0, dropLast: true, padding: false }), /contradict/);
});

test('shuffle is deterministic per (seed, epoch), differs across epochs and seeds; no shuffle keeps order', () => {
  const a = new DistributedSampler({ size: 50, rank: 1, worldSize: 2, shuffle: true, seed: 7 });
  const b = new DistributedSampler({ size: 50, rank: 1, worldSize: 2, shuffle: true, seed: 7 });
  assert.deepEqual(a.indices(3), b.indices(3));
  assert.notDeepEqual(a.indices(3), a.indices(4));
  const c = new DistributedSampler({ size: 50, rank: 1, worldSize: 2, shuffle: true, seed: 8 });
  assert.notDeepEqual(a.indices(3), c.indices(3));
  const plain = new DistributedSampler({ size: 7, rank: 1, worldSize: 3, shuffle: false, seed: 7 });
  assert.deepEqual(plain.indices(0), [1, 4, 0]); // positions 1, 4, 7; 7 wraps to sample 0
  assert.deepEqual(plain.indices(0), plain.indices(9));
});

test('N ranks with batch b take, step by step, the batch one rank with batch N*b would take', () => {
  const worldSize = 3;
  const b = 2;
  const one = new DistributedSampler({ size: 20, rank: 0, worldSize: 1, shuffle: true, seed: 11 }).indices(2);
  const shards = ranks(20, worldSize, { seed: 11 }).map((s) => s.indices(2));
  for (let step = 0; step < Math.floor(20 / (worldSize * b)); step++) {
    const together = shards.flatMap((shard) => shard.slice(step * b, (step + 1) * b));
    assert.deepEqual(sorted(together), sorted(one.slice(step * worldSize * b, (step + 1) * worldSize * b)));
  }
});

test('bad arguments are rejected', () => {
  assert.throws(() => new DistributedSampler({ size: 0, rank: 0, worldSize: 1, shuffle: true, seed: 0 }), /size must be a positive integer/);
  assert.throws(() => new DistributedSampler({ size: 4, rank: 2, worldSize: 2, shuffle: true, seed: 0 }), /rank 2 is not in 0\.\.1/);
});
