// Rendezvous with real processes: peers that must not join are refused with a message that says why,
// and exit with it, while the job itself forms; a rank that never shows up is named.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { LocalJob, type RankProcess } from '../src/cluster/local-job';

const SELFTEST = path.join(__dirname, '..', 'src', 'cluster', 'selftest-rank.js');

const scenario = (extra: object = {}) =>
  JSON.stringify({ kind: 'collectives', lengths: [7], timeoutMs: 20_000, connectTimeoutMs: 20_000, waitForGo: true, ...extra });

async function refusedWith(p: RankProcess, pattern: RegExp): Promise<void> {
  const exit = await p.exited;
  assert.equal(exit.code, 2, `rank ${p.rank} should exit with code 2; stderr: ${p.stderr}`);
  assert.match(p.stderr, pattern);
  const err = p.lastEvent('error')?.error as { code: string } | undefined;
  assert.equal(err?.code, 'refused');
}

async function formsAndPasses(procs: RankProcess[]): Promise<void> {
  await Promise.all(procs.map((p) => p.waitForEvent((e) => e.event === 'ready', 30_000)));
  for (const p of procs) p.writeLine('go');
  const exits = await Promise.all(procs.map((p) => p.exited));
  exits.forEach((e, i) => assert.equal(e.code, 0, `rank ${procs[i].rank}: ${procs[i].stderr}`));
}

test('a wrong token or a wrong world size is refused, and the job still forms', { timeout: 60_000 }, async () => {
  const ranks = [{ rank: 0 }, { rank: 1, env: { SEGDIST_JOB_TOKEN: 'not-the-token' } }, { rank: 1, env: { WORLD_SIZE: '3' } }, { rank: 1 }];
  await LocalJob.run({ script: SELFTEST, worldSize: 2, env: { SEGDIST_SELFTEST: scenario() }, ranks }, 50_000, async (job) => {
    const [rank0, badToken, badWorld, rank1] = job.procs;
    await refusedWith(badToken, /rank 1 was refused by rank 0: its SEGDIST_JOB_TOKEN does not match rank 0's/);
    await refusedWith(badWorld, /rank 1 was refused by rank 0: it has WORLD_SIZE=3, rank 0 has WORLD_SIZE=2/);
    await formsAndPasses([rank0, rank1]);
  });
});

test('a rank on another data plane is refused, naming it and both planes', { timeout: 60_000 }, async () => {
  const ranks = [{ rank: 0 }, { rank: 1, env: { SEGDIST_SELFTEST: scenario({ dataPlane: 'zeromq' }) } }, { rank: 1 }];
  await LocalJob.run({ script: SELFTEST, worldSize: 2, env: { SEGDIST_SELFTEST: scenario({ dataPlane: 'stream' }) }, ranks }, 50_000, async (job) => {
    const [rank0, otherPlane, rank1] = job.procs;
    await refusedWith(otherPlane, /rank 1 was refused by rank 0: it uses the 'zeromq' data plane, rank 0 uses 'stream' \(every rank must use the same: dist\.data_plane\)/);
    await formsAndPasses([rank0, rank1]);
  });
});

test('a second process with the same rank is refused', { timeout: 60_000 }, async () => {
  const ranks = [{ rank: 0 }, { rank: 1 }, { rank: 1 }];
  await LocalJob.run({ script: SELFTEST, worldSize: 2, env: { SEGDIST_SELFTEST: scenario() }, ranks }, 50_000, async (job) => {
    const [rank0, a, b] = job.procs;
    // Whichever registers second is the duplicate, and the only one to exit before 'go'.
    const dup = await Promise.race([a.exited.then(() => a), b.exited.then(() => b)]);
    const kept = dup === a ? b : a;
    await refusedWith(dup, /rank 1 was refused by rank 0: rank 1 is already registered \(pid \d+ on .+\); two processes were started with the same RANK/);
    await formsAndPasses([rank0, kept]);
  });
});

test('a rank that never starts is named when the rendezvous times out', { timeout: 60_000 }, async () => {
  const opts = { script: SELFTEST, worldSize: 3, env: { SEGDIST_SELFTEST: scenario({ connectTimeoutMs: 3000 }) }, ranks: [{ rank: 0 }, { rank: 1 }] };
  await LocalJob.run(opts, 30_000, async (job) => {
    const exits = await Promise.all(job.procs.map((p) => p.exited));
    for (const p of job.procs) {
      assert.equal(exits[p.rank].code, 2, p.stderr);
      assert.match(p.stderr, /rendezvous timed out after 3\.0 s: rank\(s\) 2 did not register with rank 0/);
      assert.deepEqual((p.lastEvent('error')?.error as { ranks: number[] }).ranks, [2]);
    }
  });
});
