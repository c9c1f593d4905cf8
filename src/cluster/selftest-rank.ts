// One rank of a collective self-test: `node dist/src/cluster/selftest-rank.js` with the launcher's
// environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, SEGDIST_JOB_TOKEN) and a scenario in
// SEGDIST_SELFTEST (JSON). The end-to-end tests start N of these as real processes; a person can do the
// same to check that a set of hosts can run a job (like nccl-tests, at a much smaller scale).
//
// It talks in JSON lines on stdout: {"event":"ready",...} once connected, {"event":"ok",...} at the end,
// {"event":"error","error":{code,message,ranks}} on failure (also the message alone on stderr).
// Exit codes: 0 passed, 2 a CommError, 3 a wrong result, 1 anything else.

import { createHash } from 'node:crypto';
import * as readline from 'node:readline';
import { CommError } from './comm-error';
import { Communicator } from './communicator';
import type { DataPlane } from './data-transport';
import { readDistEnv } from './dist-env';
import { GradBuckets } from './grad-buckets';

export interface SelftestScenario {
  /**
   * collectives: allreduce (sync, async sum and mean), broadcast and barrier on each length, checked exactly.
   * loop: allreduce until something fails (for fault tests), reporting the failure.
   * buckets: GradBuckets.averaged over a mix of tensor sizes, checked exactly.
   * abandon: one allreduce, then leave without close(): even ranks by process.exit(5), odd ranks by
   *   returning with process.exitCode = 6 (the process must still end with that status).
   * connect: join and leave.
   * mismatch: one allreduce of `loopLength` elements named 'grad', except on `mismatchRank`, which calls
   *   it 'other' (or, with `mismatchLength`, gives it that many elements): the job must fail naming both.
   * digest: a sum and a mean of `loopLength` seeded random floats (not integers: the bits depend on the
   *   order of the additions), reported as a SHA-256 of the results, for comparing ways of reducing.
   */
  kind: 'collectives' | 'loop' | 'buckets' | 'abandon' | 'connect' | 'mismatch' | 'digest';
  lengths?: number[];
  timeoutMs?: number;
  connectTimeoutMs?: number;
  subChunkBytes?: number;
  /** Wait for a line on stdin after connecting, before running (lets a test act in between). */
  waitForGo?: boolean;
  /** Ranks that connect and then do nothing, so the others' waits time out. */
  idleRanks?: number[];
  /** Elements per allreduce in the loop scenario. */
  loopLength?: number;
  /** The data plane to run on (default: the Communicator's). */
  dataPlane?: DataPlane;
  /** Whether large allreduces may run in the native ring (default: the Communicator's, yes). */
  nativeRing?: boolean;
  /** The rank that runs a different collective in the mismatch scenario. */
  mismatchRank?: number;
  /** Elements of the mismatching rank's allreduce (default: the same length, another name). */
  mismatchLength?: number;
}

function emit(obj: object): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Integer-valued input so that every sum is exact in float32 whatever the order of additions. */
function input(rank: number, length: number, salt: number): Float32Array {
  const a = new Float32Array(length);
  for (let i = 0; i < length; i++) a[i] = ((i * 7 + salt * 13 + rank * 31) % 1001) - 500;
  return a;
}

/** Floats of every magnitude and sign, seeded by rank (a xorshift), so that sums round. */
function randomFloats(rank: number, length: number): Float32Array {
  const a = new Float32Array(length);
  let s = (rank + 1) * 2654435761 >>> 0;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    a[i] = ((s / 4294967296) - 0.5) * 2 ** ((i % 17) - 8);
  }
  return a;
}

function expectedSum(worldSize: number, length: number, salt: number): Float32Array {
  const s = new Float32Array(length);
  for (let r = 0; r < worldSize; r++) {
    const a = input(r, length, salt);
    for (let i = 0; i < length; i++) s[i] += a[i];
  }
  return s;
}

class WrongResult extends Error {}

function check(what: string, got: Float32Array, want: Float32Array): void {
  if (got.length !== want.length) throw new WrongResult(`${what}: length ${got.length}, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) {
      throw new WrongResult(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
    }
  }
}

async function waitForLine(): Promise<void> {
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => rl.once('line', () => resolve()));
  rl.close();
}

async function collectives(comm: Communicator, lengths: number[]): Promise<number> {
  const n = comm.worldSize;
  let checks = 0;
  for (const [k, length] of lengths.entries()) {
    const sum = expectedSum(n, length, k);
    check(`allreduceSumSync len ${length}`, comm.allreduceSumSync(`sync.${length}`, input(comm.rank, length, k)), sum);
    check(`allreduce sum len ${length}`, await comm.allreduce(`async.${length}`, input(comm.rank, length, k)), sum);
    const out = new Float32Array(length);
    if (comm.allreduceSumSync(`sync-out.${length}`, input(comm.rank, length, k), out) !== out) throw new WrongResult('allreduceSumSync ignored out');
    check(`allreduceSumSync into out len ${length}`, out, sum);
    const own = input(comm.rank, length, k);
    check(`allreduce into its input len ${length}`, await comm.allreduce(`async-self.${length}`, own, 'sum', own), sum);
    const mean = sum.map((v) => Math.fround(v / n));
    check(`allreduceMean len ${length}`, await comm.allreduceMean(`mean.${length}`, input(comm.rank, length, k)), mean);
    // Several in flight, then a synchronous one behind them: all must come back, in order, exact.
    const inflight = [0, 1, 2].map((j) => comm.allreduce(`bucket.${length}.${j}`, input(comm.rank, length, k)));
    check(`sync behind async len ${length}`, comm.allreduceSumSync(`behind.${length}`, input(comm.rank, length, k)), sum);
    for (const r of await Promise.all(inflight)) check(`in-flight allreduce len ${length}`, r, sum);
    // In place on shared memory, whole and as a subarray (the elements around it must not change).
    const shared = comm.sharedArray(length + 2);
    shared.set(input(comm.rank, length, k), 1);
    shared[0] = shared[length + 1] = -7;
    await comm.allreduceInPlace(`inplace.${length}`, shared.subarray(1, length + 1));
    check(`allreduceInPlace len ${length}`, shared.subarray(1, length + 1), sum);
    check(`allreduceInPlace guard len ${length}`, new Float32Array([shared[0], shared[length + 1]]), new Float32Array([-7, -7]));
    shared.set(input(comm.rank, length, k), 1);
    await comm.allreduceInPlace(`inplace-mean.${length}`, shared.subarray(1, length + 1), 'mean');
    check(`allreduceInPlace mean len ${length}`, shared.subarray(1, length + 1), mean);
    comm.releaseShared(shared);
    check(`broadcast len ${length}`, await comm.broadcast(`bcast.${length}`, input(comm.rank, length, k)), input(0, length, k));
    check(`broadcastSync len ${length}`, comm.broadcastSync(`bcast-sync.${length}`, input(comm.rank, length, k)), input(0, length, k));
    await comm.barrier(`barrier.${length}`);
    checks += 14;
  }
  return checks;
}

async function buckets(comm: Communicator): Promise<number> {
  const n = comm.worldSize;
  // Tiny BN-like vectors around larger conv weights, and one tensor bigger than a bucket.
  const sizes = [64, 64, 9 * 64 * 64, 64, 64, 300_000, 1, 7, 20_000];
  const fused = new GradBuckets(comm, { bucketBytes: 256 * 1024, name: 'grad' });
  let checks = 0;
  for (let step = 0; step < 3; step++) {
    const grads = sizes.map((len, i) => ({ name: `p${i}.weight`, data: input(comm.rank, len, step * 100 + i) }));
    const out = await fused.averaged(grads);
    out.forEach((g, i) => {
      if (g.name !== grads[i].name) throw new WrongResult(`bucket output ${i} is '${g.name}', expected '${grads[i].name}'`);
      const want = expectedSum(n, sizes[i], step * 100 + i).map((v) => Math.fround(v / n));
      check(`bucketed mean of ${g.name} step ${step}`, g.data, want);
      checks++;
    });
    if (fused.buckets.length < 3) throw new WrongResult(`expected at least 3 buckets, got ${fused.buckets.length}`);
  }
  return checks;
}

async function loop(comm: Communicator, length: number): Promise<never> {
  const want = expectedSum(comm.worldSize, length, 0);
  for (let i = 0; ; i++) {
    check(`loop ${i}`, comm.allreduceSumSync('loop', input(comm.rank, length, 0)), want);
    if (i === 10) emit({ event: 'looping', rank: comm.rank });
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
}

async function main(): Promise<number | undefined> {
  const scenario = JSON.parse(process.env.SEGDIST_SELFTEST ?? '{"kind":"collectives"}') as SelftestScenario;
  const env = readDistEnv();
  const started = Date.now();
  let comm: Communicator | undefined;
  try {
    comm = await Communicator.connect(env, {
      timeoutMs: scenario.timeoutMs,
      connectTimeoutMs: scenario.connectTimeoutMs,
      subChunkBytes: scenario.subChunkBytes,
      dataPlane: scenario.dataPlane,
      nativeRing: scenario.nativeRing,
    });
    emit({ event: 'ready', rank: comm.rank, worldSize: comm.worldSize, dataEndpoint: comm.dataEndpoint, pid: process.pid, simd: comm.simd, nativeRing: comm.nativeRing });
    if (scenario.waitForGo) await waitForLine();
    if (scenario.idleRanks?.includes(comm.rank)) {
      emit({ event: 'idle', rank: comm.rank });
      await new Promise((r) => setTimeout(r, 3_600_000));
    }
    let checks = 0;
    if (scenario.kind === 'abandon') {
      check('abandon', await comm.allreduce('abandon', input(comm.rank, 1000, 0)), expectedSum(comm.worldSize, 1000, 0));
      emit({ event: 'abandoning', rank: comm.rank });
      if (comm.rank % 2 === 0) process.exit(5);
      process.exitCode = 6;
      return undefined;
    }
    if (scenario.kind === 'collectives') checks = await collectives(comm, scenario.lengths ?? [0, 1, 7, 1000]);
    else if (scenario.kind === 'buckets') checks = await buckets(comm);
    else if (scenario.kind === 'loop') await loop(comm, scenario.loopLength ?? 1000);
    else if (scenario.kind === 'digest') {
      const length = scenario.loopLength ?? 1000;
      const hash = createHash('sha256');
      for (const op of ['sum', 'mean'] as const) {
        const r = await comm.allreduce(`digest.${op}`, randomFloats(comm.rank, length), op);
        hash.update(new Uint8Array(r.buffer, r.byteOffset, r.byteLength));
      }
      emit({ event: 'digest', rank: comm.rank, sha256: hash.digest('hex'), nativeAllreduces: comm.nativeAllreduces });
    } else if (scenario.kind === 'mismatch') {
      const odd = comm.rank === scenario.mismatchRank;
      const length = odd && scenario.mismatchLength !== undefined ? scenario.mismatchLength : (scenario.loopLength ?? 1000);
      await comm.allreduce(odd && scenario.mismatchLength === undefined ? 'other' : 'grad', input(comm.rank, length, 0));
      throw new WrongResult('a mismatched allreduce completed');
    }
    await comm.close();
    emit({ event: 'ok', rank: env.rank, checks, ms: Date.now() - started, nativeAllreduces: comm.nativeAllreduces });
    return 0;
  } catch (err) {
    const ms = Date.now() - started;
    if (err instanceof CommError) {
      emit({ event: 'error', rank: env.rank, ms, error: err.toData() });
      process.stderr.write(`${err.message}\n`);
      await comm?.close().catch(() => undefined);
      return 2;
    }
    emit({ event: 'error', rank: env.rank, ms, error: { code: err instanceof WrongResult ? 'wrong-result' : 'other', message: String(err), ranks: [] } });
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await comm?.close().catch(() => undefined);
    return err instanceof WrongResult ? 3 : 1;
  }
}

if (require.main === module) {
  void main().then((code) => {
    if (code !== undefined) process.exit(code);
  });
}
