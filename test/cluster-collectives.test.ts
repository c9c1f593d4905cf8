// End to end: real rank processes on 127.0.0.1, real sockets, on every data plane. Each rank runs the 'collectives'
// self-test scenario (src/cluster/selftest-rank.ts): for every length, the synchronous and asynchronous
// allreduce (sum, mean, several in flight with a synchronous one behind them), broadcast and barrier,
// each compared exactly with the expected result (integer-valued inputs, so float32 sums are exact).

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { LocalJob } from '../src/cluster/local-job';
import { NATIVE_BUILT, PLANE_VARIANTS } from './helpers/planes';

const SELFTEST = path.join(__dirname, '..', 'src', 'cluster', 'selftest-rank.js');
const LENGTHS = [0, 1, 7, 1_000_003];

// Of the 14 checks per length, 11 are allreduces; at 1M elements they are the native ring's to run.
const NATIVE_PER_RANK = 11;

for (const { label, dataPlane, nativeRing } of PLANE_VARIANTS) for (const worldSize of [2, 3, 4]) {
  test(`allreduce, broadcast and barrier are exact with ${worldSize} ranks on the ${label}`, { timeout: 120_000 }, async () => {
    await LocalJob.run(
      {
        script: SELFTEST,
        worldSize,
        env: {
          SEGDIST_SELFTEST: JSON.stringify({
            kind: 'collectives',
            lengths: LENGTHS,
            timeoutMs: 30_000,
            connectTimeoutMs: 30_000,
            // Small sub-chunks so the 1M-element case runs the pipeline over many pieces.
            subChunkBytes: 256 * 1024,
            dataPlane,
            nativeRing,
          }),
        },
      },
      110_000,
      async (job) => {
        const exits = await Promise.all(job.procs.map((p) => p.exited));
        for (const p of job.procs) {
          assert.equal(exits[p.rank].code, 0, `rank ${p.rank} failed: ${JSON.stringify(p.lastEvent('error'))} ${p.stderr}`);
          assert.equal(p.lastEvent('ok')?.checks, 14 * LENGTHS.length);
          assert.equal(p.lastEvent('ready')?.simd, true);
          const native = nativeRing && NATIVE_BUILT;
          assert.equal(p.lastEvent('ready')?.nativeRing, native, 'the native ring is built by npm ci (SEGDIST_NO_NATIVE=1 skips it)');
          assert.equal(p.lastEvent('ok')?.nativeAllreduces, native ? NATIVE_PER_RANK : 0);
          // A loopback job binds its data sockets on loopback only.
          assert.match(String(p.lastEvent('ready')?.dataEndpoint), /^tcp:\/\/127\.0\.0\.1:\d+$/);
        }
      },
    );
  });
}

// The native ring adds in the same order as the JavaScript ring, so the results are the same bits,
// also where the order matters (random floats, not the integers above).
test('the native ring and the JavaScript ring give the same bits', { timeout: 120_000 }, async () => {
  const digests: string[][] = [];
  for (const nativeRing of [true, false]) {
    const scenario = { kind: 'digest', loopLength: 400_003, timeoutMs: 30_000, connectTimeoutMs: 30_000, subChunkBytes: 256 * 1024, nativeRing };
    digests.push(await LocalJob.run({ script: SELFTEST, worldSize: 3, env: { SEGDIST_SELFTEST: JSON.stringify(scenario) } }, 110_000, async (job) => {
      const exits = await Promise.all(job.procs.map((p) => p.exited));
      return job.procs.map((p) => {
        assert.equal(exits[p.rank].code, 0, `rank ${p.rank} failed: ${p.stderr}`);
        const d = p.lastEvent('digest')!;
        assert.equal(d.nativeAllreduces, nativeRing && NATIVE_BUILT ? 2 : 0);
        return String(d.sha256);
      });
    }));
  }
  // Every rank holds the same result, and both rings computed it.
  assert.equal(new Set(digests[0]).size, 1, digests[0].join(' '));
  assert.deepEqual(digests[0], digests[1]);
});
