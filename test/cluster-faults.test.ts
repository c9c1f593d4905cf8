// Faults with real processes: junk on the wire is dropped without harming the job; a killed rank or a
// rank that never arrives makes every other rank fail within the timeout, with an error naming it.

import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import * as path from 'node:path';
import { test } from 'node:test';
import * as zmq from 'zeromq';
import { PLANE_VARIANTS } from './helpers/planes';
import { LocalJob, type RankProcess } from '../src/cluster/local-job';
import { encodeHeader, hashName, WireDtype, WireOp } from '../src/cluster/wire-header';

const SELFTEST = path.join(__dirname, '..', 'src', 'cluster', 'selftest-rank.js');

const ready = (p: RankProcess) => p.waitForEvent((e) => e.event === 'ready', 30_000);
const errorOf = (p: RankProcess) => p.lastEvent('error')?.error as { code: string; message: string; ranks: number[] } | undefined;

async function sendRawTcp(endpoint: string, bytes: Buffer): Promise<void> {
  const m = /^tcp:\/\/([\d.]+):(\d+)$/.exec(endpoint)!;
  await new Promise<void>((resolve) => {
    const sock = tcpConnect(Number(m[2]), m[1], () => sock.end(bytes));
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve();
    };
    const timer = setTimeout(done, 2000);
    sock.resume(); // read (and discard) ZeroMQ's greeting so the close is seen
    sock.on('error', done);
    sock.on('close', done);
  });
}

/** Everything a confused or hostile peer might send to a ZeroMQ endpoint. */
async function sendJunk(endpoint: string): Promise<void> {
  await sendRawTcp(endpoint, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await sendRawTcp(endpoint, Buffer.alloc(70_000, 0xff));
  const dealer = new zmq.Dealer({ linger: 200, sendTimeout: 2000 });
  dealer.connect(endpoint);
  const forged = encodeHeader({
    op: WireOp.AllreduceSum, dtype: WireDtype.Float32, sender: 0, seq: 1, nameHash: hashName('sync.0'),
    step: 0, chunk: 0, byteLength: 8, totalBytes: 8,
  });
  const junk: Buffer[][] = [
    [Buffer.from('hello')],
    [Buffer.alloc(40), Buffer.alloc(8)],
    [forged, Buffer.alloc(8)], // a well-formed data message, but not from the ring neighbour
    [Buffer.from('x'), Buffer.from('y'), Buffer.from('z'), Buffer.from('w')],
    [encodeHeader({ op: WireOp.Register, dtype: WireDtype.Json, sender: 1, seq: 0, nameHash: 0, step: 0, chunk: 0, byteLength: 4, totalBytes: 4 }), Buffer.from('{"a"')],
    [encodeHeader({ op: WireOp.Register, dtype: WireDtype.Json, sender: 1, seq: 0, nameHash: 0, step: 0, chunk: 0, byteLength: 2, totalBytes: 2 }), Buffer.from('{}')],
  ];
  for (const frames of junk) await dealer.send(frames);
  await new Promise((r) => setTimeout(r, 300));
  dealer.close();
}

test('junk sent to the data and rendezvous ports is dropped and the job carries on', { timeout: 90_000 }, async () => {
  const opts = {
    script: SELFTEST,
    worldSize: 2,
    env: {
      SEGDIST_SELFTEST: JSON.stringify({ kind: 'collectives', lengths: [0, 7, 100_000], timeoutMs: 20_000, connectTimeoutMs: 20_000, waitForGo: true }),
    },
  };
  await LocalJob.run(opts, 80_000, async (job) => {
    const readies = await Promise.all(job.procs.map(ready));
    for (const r of readies) await sendJunk(String(r.dataEndpoint));
    await sendJunk(`tcp://127.0.0.1:${job.port}`);
    for (const p of job.procs) p.writeLine('go');
    const exits = await Promise.all(job.procs.map((p) => p.exited));
    for (const p of job.procs) assert.equal(exits[p.rank].code, 0, `rank ${p.rank}: ${p.stderr}`);
    assert.match(job.procs[1].stderr, /rank 1: dropped a message on the data socket \(from a peer that is not rank 0\)/);
    assert.match(job.procs[0].stderr, /rendezvous: dropped a message/);
  });
});

for (const { label, dataPlane, nativeRing } of PLANE_VARIANTS) for (const victim of [1, 0]) {
  test(`kill -9 of rank ${victim} makes the others fail fast, naming it (${label})`, { timeout: 60_000 }, async () => {
    const timeoutMs = 20_000;
    // Large enough for the native ring where it runs.
    const loopLength = nativeRing ? 300_000 : 50_000;
    const opts = {
      script: SELFTEST,
      worldSize: 3,
      env: { SEGDIST_SELFTEST: JSON.stringify({ kind: 'loop', loopLength, timeoutMs, connectTimeoutMs: 20_000, dataPlane, nativeRing }) },
    };
    await LocalJob.run(opts, 50_000, async (job) => {
      await Promise.all(job.procs.map((p) => p.waitForEvent((e) => e.event === 'looping', 30_000)));
      const killedAt = Date.now();
      job.procs[victim].kill('SIGKILL');
      const survivors = job.procs.filter((p) => p.rank !== victim);
      const exits = await Promise.all(survivors.map((p) => p.exited));
      const elapsed = Date.now() - killedAt;
      assert.ok(elapsed < timeoutMs, `survivors took ${elapsed} ms, the timeout is ${timeoutMs} ms`);
      survivors.forEach((p, i) => {
        assert.equal(exits[i].code, 2, `rank ${p.rank}: ${p.stderr}`);
        const err = errorOf(p);
        assert.equal(err?.code, 'lost-rank', JSON.stringify(err));
        assert.deepEqual(err?.ranks, [victim]);
        assert.match(err!.message, new RegExp(`rank ${victim} was lost`));
      });
    });
  });
}

for (const { label, dataPlane, nativeRing } of PLANE_VARIANTS) {
  for (const [what, extra, pattern] of [
    ['another collective', {}, /belongs to collective/],
    ['another length', { mismatchLength: 999 }, /tensor is \d+ bytes, this rank's is \d+ bytes/],
  ] as const) {
    test(`a rank that runs ${what} fails the job loudly, naming the rank and the collective (${label})`, { timeout: 60_000 }, async () => {
      const opts = {
        script: SELFTEST,
        worldSize: 3,
        env: { SEGDIST_SELFTEST: JSON.stringify({ kind: 'mismatch', loopLength: 100_000, mismatchRank: 1, timeoutMs: 20_000, connectTimeoutMs: 20_000, dataPlane, nativeRing, ...extra }) },
      };
      await LocalJob.run(opts, 50_000, async (job) => {
        const started = Date.now();
        const exits = await Promise.all(job.procs.map((p) => p.exited));
        assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
        for (const p of job.procs) {
          assert.equal(exits[p.rank].code, 2, `rank ${p.rank}: ${p.stderr}`);
          const err = errorOf(p)!;
          assert.equal(err.code, 'protocol', JSON.stringify(err));
          assert.match(err.message, /allreduce '(grad|other)' #1/, JSON.stringify(err));
        }
        // A rank that got a message of the other collective names its sender, the collective and the
        // difference; the others may have heard of it first, through the abort, and quote it.
        const direct = job.procs.map((p) => errorOf(p)!).filter((e) => /#1 on rank \d: rejected a message from rank \d/.test(e.message));
        assert.ok(direct.length > 0, job.procs.map((p) => p.stderr).join('\n'));
        for (const e of direct) {
          assert.match(e.message, pattern);
          const [, on, from] = /on rank (\d): rejected a message from rank (\d)/.exec(e.message)!;
          assert.equal(Number(from), (Number(on) + 2) % 3, e.message);
          assert.deepEqual(e.ranks, [Number(from)]);
        }
      });
    });
  }
}

// 1000 elements run in JavaScript; 300k in the native ring where it is built (its wait is the engine's watchdog and an abort).
for (const length of [1000, 300_000]) {
  test(`a rank that never arrives is named by the others when their wait times out (${length} elements)`, { timeout: 60_000 }, async () => {
    const timeoutMs = 3000;
    const opts = {
      script: SELFTEST,
      worldSize: 3,
      env: { SEGDIST_SELFTEST: JSON.stringify({ kind: 'collectives', lengths: [length], timeoutMs, connectTimeoutMs: 20_000, idleRanks: [2] }) },
    };
    await LocalJob.run(opts, 50_000, async (job) => {
      await job.procs[2].waitForEvent((e) => e.event === 'idle', 30_000);
      const started = Date.now();
      const exits = await Promise.all(job.procs.slice(0, 2).map((p) => p.exited));
      const elapsed = Date.now() - started;
      assert.ok(elapsed < timeoutMs + 5000, `took ${elapsed} ms`);
      job.procs.slice(0, 2).forEach((p, i) => {
        assert.equal(exits[i].code, 2, p.stderr);
        const err = errorOf(p)!;
        assert.equal(err.code, 'timeout', JSON.stringify(err));
        assert.deepEqual(err.ranks, [2]);
        assert.match(err.message, new RegExp(`allreduce 'sync\\.${length}' #1 timed out on rank [01] after 3\\.0 s: rank 2 did not arrive \\(it has not run a collective yet\\)`));
      });
    });
  });
}

test('a rank that exits without close() still exits with its own status', { timeout: 60_000 }, async () => {
  const opts = { script: SELFTEST, worldSize: 2, env: { SEGDIST_SELFTEST: JSON.stringify({ kind: 'abandon', timeoutMs: 20_000, connectTimeoutMs: 20_000 }) } };
  await LocalJob.run(opts, 50_000, async (job) => {
    const exits = await Promise.all(job.procs.map((p) => p.exited));
    // Not 134 (SIGABRT from ZeroMQ sockets torn down with the comm thread).
    assert.equal(exits[0].code, 5, job.procs[0].stderr);
    assert.equal(exits[1].code, 6, job.procs[1].stderr);
  });
});
