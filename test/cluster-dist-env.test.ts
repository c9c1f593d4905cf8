import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DistEnvError, isLoopbackHost, readDistEnv } from '../src/cluster/dist-env';

const job = { RANK: '1', LOCAL_RANK: '1', WORLD_SIZE: '4', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' };

function throwsNaming(env: NodeJS.ProcessEnv, variable: string, pattern?: RegExp): void {
  assert.throws(
    () => readDistEnv(env),
    (err: unknown) => {
      assert.ok(err instanceof DistEnvError, `expected DistEnvError, got ${String(err)}`);
      assert.equal(err.variable, variable);
      assert.match(err.message, new RegExp(variable));
      if (pattern) assert.match(err.message, pattern);
      return true;
    },
  );
}

test('no launch variables means a job of one', () => {
  const env = readDistEnv({ PATH: '/usr/bin' });
  assert.deepEqual({ ...env }, { rank: 0, localRank: 0, worldSize: 1, masterAddr: '', masterPort: 0, jobToken: '' });
});

test('a full loopback job reads every variable', () => {
  const env = readDistEnv({ ...job, SEGDIST_JOB_TOKEN: 's3cret' });
  assert.deepEqual({ ...env }, { rank: 1, localRank: 1, worldSize: 4, masterAddr: '127.0.0.1', masterPort: 29500, jobToken: 's3cret' });
});

test('LOCAL_RANK defaults to RANK; the token is optional on loopback', () => {
  const env = readDistEnv({ ...job, LOCAL_RANK: undefined, MASTER_ADDR: 'localhost' });
  assert.equal(env.localRank, 1);
  assert.equal(env.jobToken, '');
});

test('WORLD_SIZE=1 needs no master', () => {
  const env = readDistEnv({ RANK: '0', WORLD_SIZE: '1' });
  assert.equal(env.worldSize, 1);
});

test('each bad variable is named in the error', () => {
  throwsNaming({ RANK: '0' }, 'WORLD_SIZE', /RANK/);
  throwsNaming({ ...job, WORLD_SIZE: 'four' }, 'WORLD_SIZE', /not a non-negative integer/);
  throwsNaming({ ...job, WORLD_SIZE: '0' }, 'WORLD_SIZE', /out of range/);
  throwsNaming({ ...job, RANK: undefined }, 'RANK', /not set/);
  throwsNaming({ ...job, RANK: '4' }, 'RANK', /0\.\.3/);
  throwsNaming({ ...job, RANK: '-1' }, 'RANK');
  throwsNaming({ ...job, LOCAL_RANK: '1.5' }, 'LOCAL_RANK');
  throwsNaming({ ...job, MASTER_ADDR: undefined }, 'MASTER_ADDR', /not set/);
  throwsNaming({ ...job, MASTER_ADDR: 'tcp://10.0.0.1:29500' }, 'MASTER_ADDR', /no scheme or port/);
  throwsNaming({ ...job, MASTER_PORT: undefined }, 'MASTER_PORT', /not set/);
  throwsNaming({ ...job, MASTER_PORT: '70000' }, 'MASTER_PORT', /out of range/);
  throwsNaming({ ...job, SEGDIST_JOB_TOKEN: '' }, 'SEGDIST_JOB_TOKEN', /empty/);
});

test('a job reachable off this host must have a token', () => {
  throwsNaming({ ...job, MASTER_ADDR: '10.1.2.3' }, 'SEGDIST_JOB_TOKEN', /10\.1\.2\.3/);
  assert.equal(readDistEnv({ ...job, MASTER_ADDR: 'node-0.cluster', SEGDIST_JOB_TOKEN: 't' }).masterAddr, 'node-0.cluster');
});

test('loopback detection', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['10.0.0.1', '0.0.0.0', 'example.com', '::']) assert.equal(isLoopbackHost(h), false, h);
});
