// Allreduce bandwidth on loopback: `node dist/bench/allreduce.js [--sizes 1M,11M,25M] [--worlds 2,4]
// [--modes inplace,copy,sync] [--iters 5] [--sub-chunk 1048576] [--gc-every 16777216] [--js] [--json]`.
//
// Starts WORLD_SIZE real processes per world size (this same file, as ranks) and times Communicator
// allreduces of float32 arrays:
//   inplace  allreduceInPlace on a sharedArray: the ring alone (what gloo's all_reduce on a tensor does);
//   copy     allreduce() into a reused output array: plus the copies into the shared slot and out;
//   sync     allreduceSumSync(), likewise, blocking the calling thread (SyncBN's path).
// It reports bus bandwidth, bytes * 2(n-1)/n / time: the rate each rank's link carries, comparable
// across world sizes and with nccl-tests / gloo figures. The median over iterations is reported; every
// iteration starts after a barrier so the ranks start together.

import * as os from 'node:os';
import { Communicator } from '../src/cluster/communicator';
import { readDistEnv } from '../src/cluster/dist-env';
import { LocalJob } from '../src/cluster/local-job';

type Mode = 'inplace' | 'copy' | 'sync';

interface BenchConfig {
  sizes: number[];
  modes: Mode[];
  iters: number;
  warmup: number;
  subChunkBytes: number;
  minorGcEveryBytes: number;
  forceJs: boolean;
}

interface RankResult {
  mode: Mode;
  size: number;
  ms: number[];
  /** CPU time of the whole process (all threads, user + system) per iteration. */
  cpuMs: number[];
}

const ROLE_ENV = 'SEGDIST_BENCH_RANK';

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s.trim());
  if (!m) throw new Error(`bad size ${s} (e.g. 1M, 250k, 1000)`);
  const mult = m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1e3 : 1e6;
  return Math.round(Number(m[1]) * mult);
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

// --- a rank ------------------------------------------------------------------------------------

async function rankMain(): Promise<void> {
  const cfg = JSON.parse(process.env[ROLE_ENV]!) as BenchConfig;
  const comm = await Communicator.connect(readDistEnv(), {
    subChunkBytes: cfg.subChunkBytes,
    minorGcEveryBytes: cfg.minorGcEveryBytes,
    forceJsKernels: cfg.forceJs,
    timeoutMs: 120_000,
    connectTimeoutMs: 60_000,
  });
  const results: RankResult[] = [];
  for (const mode of cfg.modes) {
    for (const size of cfg.sizes) {
      const data = mode === 'inplace' ? comm.sharedArray(size) : new Float32Array(size);
      const out = new Float32Array(mode === 'inplace' ? 0 : size); // reused, as a trainer would
      for (let i = 0; i < size; i++) data[i] = (i + comm.rank) % 17;
      const ms: number[] = [];
      const cpuMs: number[] = [];
      for (let it = 0; it < cfg.warmup + cfg.iters; it++) {
        await comm.barrier(`bench.${mode}.${size}.${it}`);
        const c0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        // The barrier between iterations completes a collective, so the array may be sent from directly.
        if (mode === 'inplace') await comm.allreduceInPlace(`bench.${size}`, data, 'sum', true);
        else if (mode === 'sync') comm.allreduceSumSync(`bench.${size}`, data, out);
        else await comm.allreduce(`bench.${size}`, data, 'sum', out);
        const t = Number(process.hrtime.bigint() - t0) / 1e6;
        const c = process.cpuUsage(c0);
        if (it >= cfg.warmup) {
          ms.push(t);
          cpuMs.push((c.user + c.system) / 1e3);
        }
      }
      if (mode === 'inplace') comm.releaseShared(data);
      results.push({ mode, size, ms, cpuMs });
    }
  }
  await comm.close();
  process.stdout.write(JSON.stringify({ event: 'result', rank: comm.rank, simd: comm.simd, results }) + '\n');
}

// --- the driver --------------------------------------------------------------------------------

async function runWorld(n: number, cfg: BenchConfig): Promise<{ simd: boolean; results: RankResult[] }[]> {
  return LocalJob.run({ script: __filename, worldSize: n, env: { [ROLE_ENV]: JSON.stringify(cfg) } }, 600_000, async (job) => {
    const exits = await Promise.all(job.procs.map((p) => p.exited));
    exits.forEach((e, r) => {
      if (e.code !== 0) throw new Error(`world ${n}: rank ${r} exited with ${e.code ?? e.signal}: ${job.procs[r].stderr}`);
    });
    return job.procs.map((p) => p.lastEvent('result') as unknown as { simd: boolean; results: RankResult[] });
  });
}

async function driverMain(): Promise<void> {
  const cfg: BenchConfig = {
    sizes: (arg('--sizes') ?? '1M,11M,25M').split(',').map(parseSize),
    modes: (arg('--modes') ?? 'inplace,copy').split(',') as Mode[],
    iters: Number(arg('--iters') ?? 5),
    warmup: Number(arg('--warmup') ?? 2),
    subChunkBytes: Number(arg('--sub-chunk') ?? 1 << 20),
    minorGcEveryBytes: Number(arg('--gc-every') ?? 16 << 20),
    forceJs: process.argv.includes('--js'),
  };
  const worlds = (arg('--worlds') ?? '2,4').split(',').map(Number);
  const json = process.argv.includes('--json');
  const rows: object[] = [];
  if (!json) {
    console.log(
      `allreduce float32 over 127.0.0.1, ${os.cpus().length} CPUs (load ${os.loadavg()[0].toFixed(1)}), sub-chunk ${cfg.subChunkBytes} B, ` +
        `${cfg.forceJs ? 'JS' : 'wasm SIMD'} add, median of ${cfg.iters}`,
    );
    console.log('mode     world  elements      MB   time ms   algbw GB/s   busbw GB/s   cpu ms/rank');
  }
  for (const n of worlds) {
    const ranks = await runWorld(n, cfg);
    for (const [k, r0] of ranks[0].results.entries()) {
      // A collective is as slow as its slowest rank.
      const ms = Math.max(...ranks.map((r) => median(r.results[k].ms)));
      const bytes = r0.size * 4;
      const algbw = bytes / (ms / 1e3) / 1e9;
      const busbw = (algbw * 2 * (n - 1)) / n;
      // CPU time per rank (all its threads): on an idle machine with enough cores, what bounds the time.
      const cpuMs = ranks.reduce((a, r) => a + median(r.results[k].cpuMs), 0) / n;
      rows.push({ mode: r0.mode, world: n, elements: r0.size, bytes, ms, algbw, busbw, cpuMs, simd: ranks[0].simd });
      if (!json) {
        console.log(
          `${r0.mode.padEnd(7)}  ${String(n).padStart(5)}  ${String(r0.size).padStart(8)}  ${(bytes / 1e6).toFixed(1).padStart(6)}` +
            `  ${ms.toFixed(1).padStart(8)}  ${algbw.toFixed(2).padStart(11)}  ${busbw.toFixed(2).padStart(11)}  ${cpuMs.toFixed(1).padStart(12)}`,
        );
      }
    }
  }
  if (json) console.log(JSON.stringify(rows));
}

if (process.env[ROLE_ENV] !== undefined) {
  rankMain().catch((err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(2);
  });
} else {
  driverMain().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
