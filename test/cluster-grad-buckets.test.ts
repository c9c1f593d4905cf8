import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { Communicator } from '../src/cluster/communicator';
import { SINGLE_PROCESS_ENV } from '../src/cluster/dist-env';
import { GradBuckets, planBuckets } from '../src/cluster/grad-buckets';
import { LocalJob } from '../src/cluster/local-job';

const SELFTEST = path.join(__dirname, '..', 'src', 'cluster', 'selftest-rank.js');

test('buckets keep order, respect the threshold, and give big tensors their own', () => {
  const items = [10, 10, 30, 5, 100, 1, 1].map((length, i) => ({ name: `t${i}`, length }));
  const plan = planBuckets(items, 40 * 4);
  assert.deepEqual(
    plan.map((b) => b.entries.map((e) => e.name)),
    [['t0', 't1'], ['t2', 't3'], ['t4'], ['t5', 't6']],
  );
  assert.deepEqual(plan.map((b) => b.length), [20, 35, 100, 2]);
  assert.deepEqual(plan[1].entries.map((e) => e.offset), [0, 30]);
  assert.deepEqual(planBuckets([], 100), []);
});

test('with world size 1 the gradients come back as they are, with no thread or socket', async () => {
  const comm = await Communicator.connect(SINGLE_PROCESS_ENV);
  assert.equal(comm.worldSize, 1);
  const g = [{ name: 'w', data: new Float32Array([1, 2, 3]) }];
  const out = await new GradBuckets(comm).averaged(g);
  assert.deepEqual(out[0].data, new Float32Array([1, 2, 3]));
  assert.deepEqual(comm.allreduceSumSync('x', new Float32Array([4])), new Float32Array([4]));
  await comm.barrier('b');
  await comm.close();
});

test('two real ranks average bucketed gradients exactly', { timeout: 60_000 }, async () => {
  await LocalJob.run(
    { script: SELFTEST, worldSize: 2, env: { SEGDIST_SELFTEST: JSON.stringify({ kind: 'buckets', timeoutMs: 20_000, connectTimeoutMs: 20_000 }) } },
    50_000,
    async (job) => {
      const exits = await Promise.all(job.procs.map((p) => p.exited));
      for (const p of job.procs) assert.equal(exits[p.rank].code, 0, `rank ${p.rank}: ${p.stderr}`);
      for (const p of job.procs) assert.equal(p.lastEvent('ok')?.checks, 27);
    },
  );
});
