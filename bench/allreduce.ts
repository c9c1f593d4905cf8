// Allreduce bandwidth on loopback, ours beside PyTorch's gloo, measured in the same run:
//
//   node dist/bench/allreduce.js [--sizes 1M,11M,25M] [--worlds 2,4] [--rounds 3] [--iters 5] [--warmup 2]
//     [--modes inplace] [--planes stream+native,stream,zeromq] [--sub-chunk 1048576] [--gc-every 16777216] [--js] [--threads] [--no-gloo] [--no-ring]
//     [--python /usr/bin/python3] [--json]
//
// Ours: starts WORLD_SIZE real processes per world size (this same file, as ranks) and times Communicator
// allreduces of float32 arrays, over each data plane given with --planes (default: all of them;
// stream+native, the default: the stream plane with large allreduces in the native ring, where it is
// built; stream, the same plane all in JavaScript, plain TCP with zero-copy receive; zeromq, the
// ZeroMQ plane), in each mode given with --modes:
//   inplace  allreduceInPlace on a sharedArray: the ring alone (what gloo's all_reduce on a tensor does);
//   copy     allreduce() into a reused output array: plus the copies into the shared slot and out;
//   sync     allreduceSumSync(), likewise, blocking the calling thread (SyncBN's path).
// Gloo: tools/bench_gloo.py (torch.distributed, gloo backend, TCP on 127.0.0.1), same sizes, same
// iteration scheme. The ceiling: tools/bench_tcp_ring.py moves exactly a ring allreduce's traffic over a
// plain TCP ring of as many processes and does nothing else (no add, no headers), so its bus bandwidth
// bounds what any ring allreduce over loopback gets on this machine; "of ring" is each implementation's
// share of it. Every iteration starts after a barrier so the ranks start together; an iteration
// takes as long as its slowest rank; a run reports the median over its iterations. A round runs ours
// and gloo once each for every world size, alternating which goes first; the table shows the median
// over rounds (the machine is shared, so single runs are noisy: the load average is printed).
//
// Bus bandwidth is bytes * 2(n-1)/n / time: the rate each rank's link carries, comparable across world
// sizes and with nccl-tests / gloo figures. "cpu ms/rank" is the CPU time of a rank's whole process (all
// threads, user + system) per allreduce: with more ranks than free cores it, not the network, bounds
// the time.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Communicator } from '../src/cluster/communicator';
import { DATA_PLANES, type DataPlane } from '../src/cluster/data-transport';
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
  /** Also measure CPU time per thread kind (Linux: /proc/self/task/<tid>/schedstat). */
  threads: boolean;
  dataPlane: DataPlane;
  nativeRing: boolean;
}

interface RankResult {
  mode: Mode;
  size: number;
  ms: number[];
  /** CPU time of the whole process (all threads) per iteration: user, system. */
  userMs: number[];
  sysMs: number[];
  /** With --threads: CPU ms per iteration of the main thread, ZeroMQ's I/O thread(s), and the rest (the comm thread, V8 helpers). */
  threadMs?: { main: number[]; zmqIo: number[]; other: number[] };
}

/** One run's figure for one (impl, mode, size, world). */
interface Sample {
  /** 'segdist/<data plane>', 'gloo' or 'tcp-ring' (the ceiling). */
  impl: string;
  round: number;
  mode: string;
  world: number;
  elements: number;
  ms: number;
  busbw: number;
  cpuMs: number;
  sysMs: number | null;
  /** With --threads (ours only): median CPU ms per rank of the main thread, ZeroMQ I/O thread(s), the rest. */
  threadMs?: Record<ThreadKind, number>;
  load: number;
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

const busbw = (elements: number, ms: number, n: number) => ((elements * 4) / (ms / 1e3) / 1e9) * ((2 * (n - 1)) / n);

// --- a rank ------------------------------------------------------------------------------------

type ThreadKind = 'main' | 'zmqIo' | 'other';

/** CPU nanoseconds so far of each of this process's threads, by kind (Linux only). */
function threadCpuNs(): Record<ThreadKind, number> {
  const out = { main: 0, zmqIo: 0, other: 0 };
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const ns = Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const name = fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      const kind: ThreadKind = Number(tid) === process.pid ? 'main' : name.startsWith('ZMQbg/IO') ? 'zmqIo' : 'other';
      out[kind] += ns;
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

async function rankMain(): Promise<void> {
  const cfg = JSON.parse(process.env[ROLE_ENV]!) as BenchConfig;
  const comm = await Communicator.connect(readDistEnv(), {
    subChunkBytes: cfg.subChunkBytes,
    minorGcEveryBytes: cfg.minorGcEveryBytes,
    forceJsKernels: cfg.forceJs,
    dataPlane: cfg.dataPlane,
    nativeRing: cfg.nativeRing,
    timeoutMs: 120_000,
    connectTimeoutMs: 60_000,
  });
  const results: RankResult[] = [];
  for (const mode of cfg.modes) {
    for (const size of cfg.sizes) {
      const data = mode === 'inplace' ? comm.sharedArray(size) : new Float32Array(size);
      const out = new Float32Array(mode === 'inplace' ? 0 : size); // reused, as a trainer would
      for (let i = 0; i < size; i++) data[i] = (i + comm.rank) % 17;
      const r: RankResult = { mode, size, ms: [], userMs: [], sysMs: [] };
      if (cfg.threads) r.threadMs = { main: [], zmqIo: [], other: [] };
      for (let it = 0; it < cfg.warmup + cfg.iters; it++) {
        await comm.barrier(`bench.${mode}.${size}.${it}`);
        const th0 = cfg.threads ? threadCpuNs() : null;
        const c0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        // The barrier between iterations completes a collective, so the array may be sent from directly.
        if (mode === 'inplace') await comm.allreduceInPlace(`bench.${size}`, data, 'sum', true);
        else if (mode === 'sync') comm.allreduceSumSync(`bench.${size}`, data, out);
        else await comm.allreduce(`bench.${size}`, data, 'sum', out);
        const t = Number(process.hrtime.bigint() - t0) / 1e6;
        const c = process.cpuUsage(c0);
        const th1 = th0 ? threadCpuNs() : null;
        if (it >= cfg.warmup) {
          r.ms.push(t);
          r.userMs.push(c.user / 1e3);
          r.sysMs.push(c.system / 1e3);
          if (th0 && th1) for (const k of ['main', 'zmqIo', 'other'] as const) r.threadMs![k].push((th1[k] - th0[k]) / 1e6);
        }
      }
      if (mode === 'inplace') comm.releaseShared(data);
      results.push(r);
    }
  }
  await comm.close();
  process.stdout.write(JSON.stringify({ event: 'result', rank: comm.rank, simd: comm.simd, native: comm.nativeAllreduces, results }) + '\n');
}

// --- the driver --------------------------------------------------------------------------------

async function runOurs(n: number, cfg: BenchConfig): Promise<Sample[]> {
  const load = os.loadavg()[0];
  const ranks = await LocalJob.run({ script: __filename, worldSize: n, env: { [ROLE_ENV]: JSON.stringify(cfg) } }, 600_000, async (job) => {
    const exits = await Promise.all(job.procs.map((p) => p.exited));
    exits.forEach((e, r) => {
      if (e.code !== 0) throw new Error(`world ${n}: rank ${r} exited with ${e.code ?? e.signal}: ${job.procs[r].stderr}`);
    });
    return job.procs.map((p) => p.lastEvent('result') as unknown as { simd: boolean; native: number; results: RankResult[] });
  });
  // Asked for the native ring and not given it (not built): say so rather than print JavaScript figures under its name.
  if (cfg.nativeRing && ranks[0].native === 0) throw new Error('the native ring is not built here (npm ci builds it; see tools/build-native.js)');
  return ranks[0].results.map((r0, k) => {
    // Each iteration takes as long as its slowest rank; the run's figure is the median iteration.
    const perIter = r0.ms.map((_, i) => Math.max(...ranks.map((r) => r.results[k].ms[i])));
    const ms = median(perIter);
    const user = ranks.reduce((a, r) => a + median(r.results[k].userMs), 0) / n;
    const sys = ranks.reduce((a, r) => a + median(r.results[k].sysMs), 0) / n;
    const threadMs = r0.threadMs
      ? (Object.fromEntries((['main', 'zmqIo', 'other'] as const).map((kind) => [kind, ranks.reduce((a, r) => a + median(r.results[k].threadMs![kind]), 0) / n])) as Record<ThreadKind, number>)
      : undefined;
    return { impl: `segdist/${planeLabel(cfg)}`, round: -1, mode: r0.mode, world: n, elements: r0.size, ms, busbw: busbw(r0.size, ms, n), cpuMs: user + sys, sysMs: sys, threadMs, load };
  });
}

/** tools/<name>, found upward from this file (dist/bench/ or any other build folder). */
function toolScript(name: string): string | null {
  for (let d = __dirname; ; d = path.dirname(d)) {
    const p = path.join(d, 'tools', name);
    if (fs.existsSync(p)) return p;
    if (path.dirname(d) === d) return null;
  }
}

/** A Python reference (tools/bench_gloo.py or tools/bench_tcp_ring.py: the same arguments and JSON rows) as `impl`. */
async function runPython(impl: 'gloo' | 'tcp-ring', python: string, script: string, n: number, cfg: BenchConfig): Promise<Sample[]> {
  const load = os.loadavg()[0];
  const args = [script, '--json', '--worlds', String(n), '--sizes', cfg.sizes.join(','), '--iters', String(cfg.iters), '--warmup', String(cfg.warmup)];
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (c) => resolve({ code: c, stdout, stderr }));
  });
  if (code !== 0) throw new Error(`${python} ${path.basename(script)} exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const rows = JSON.parse(stdout.trim().split('\n').pop()!) as { world: number; elements: number; ms: number; busbw: number; cpuMs: number }[];
  return rows.map((r) => ({ impl, round: -1, mode: 'inplace', world: r.world, elements: r.elements, ms: r.ms, busbw: r.busbw, cpuMs: r.cpuMs, sysMs: null, load }));
}

const fmtShare = (x: number | null) => (x === null ? '-' : `${Math.round(x * 100)}%`);

/** The bench's names for our ways of moving data: each data plane, and the stream plane with the native ring. */
const BENCH_PLANES = ['stream+native', ...DATA_PLANES];

function planeLabel(cfg: BenchConfig): string {
  return `${cfg.dataPlane}${cfg.nativeRing ? '+native' : ''}`;
}

function fmtSize(n: number): string {
  return n % 1e6 === 0 ? `${n / 1e6}M` : n % 1e3 === 0 ? `${n / 1e3}k` : String(n);
}

async function driverMain(): Promise<void> {
  const cfg: BenchConfig = {
    sizes: (arg('--sizes') ?? '1M,11M,25M').split(',').map(parseSize),
    modes: (arg('--modes') ?? 'inplace').split(',') as Mode[],
    iters: Number(arg('--iters') ?? 5),
    warmup: Number(arg('--warmup') ?? 2),
    subChunkBytes: Number(arg('--sub-chunk') ?? 1 << 20),
    minorGcEveryBytes: Number(arg('--gc-every') ?? 16 << 20),
    forceJs: process.argv.includes('--js'),
    threads: process.argv.includes('--threads') && process.platform === 'linux',
    dataPlane: 'stream',
    nativeRing: false,
  };
  const planes = (arg('--planes') ?? BENCH_PLANES.join(',')).split(',');
  for (const p of planes) if (!BENCH_PLANES.includes(p)) throw new Error(`--planes: unknown data plane ${p} (${BENCH_PLANES.join(', ')})`);
  for (const m of cfg.modes) if (!['inplace', 'copy', 'sync'].includes(m)) throw new Error(`--modes: unknown mode ${m} (inplace, copy, sync)`);
  const worlds = (arg('--worlds') ?? '2,4').split(',').map(Number);
  const rounds = Number(arg('--rounds') ?? 3);
  const json = process.argv.includes('--json');
  const python = arg('--python') ?? '/usr/bin/python3';
  // The Python references, each dropped (with a note) if its script is missing or fails.
  const refs = new Map<'gloo' | 'tcp-ring', string | null>();
  const notes = new Map<'gloo' | 'tcp-ring', string>();
  for (const [impl, script, flag] of [['gloo', 'bench_gloo.py', '--no-gloo'], ['tcp-ring', 'bench_tcp_ring.py', '--no-ring']] as const) {
    const found = process.argv.includes(flag) ? null : toolScript(script);
    refs.set(impl, found);
    if (found === null) notes.set(impl, `${impl}: ${process.argv.includes(flag) ? `skipped (${flag})` : `tools/${script} not found`}`);
  }
  const loadStart = os.loadavg();
  const log = (s: string) => {
    if (!json) console.log(s);
  };
  log(
    `allreduce float32 over 127.0.0.1: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${loadStart.map((l) => l.toFixed(1)).join(' ')}; ` +
      `segdist data plane(s) ${planes.join(', ')}, sub-chunk ${cfg.subChunkBytes} B, ${cfg.forceJs ? 'JS' : 'wasm SIMD'} add; ` +
      `${rounds} round(s) x median of ${cfg.iters} (+${cfg.warmup} warm-up)`,
  );

  const samples: Sample[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const n of worlds) {
      // Who goes first rotates from round to round, so a change in the machine's load hits all alike.
      const impls: string[] = [...planes, 'gloo', 'tcp-ring'];
      const order = impls.map((_, i) => impls[(i + round) % impls.length]);
      const got: Sample[] = [];
      for (const which of order) {
        if (which !== 'gloo' && which !== 'tcp-ring') {
          got.push(...(await runOurs(n, { ...cfg, dataPlane: which.split('+')[0] as DataPlane, nativeRing: which.endsWith('+native') })));
          continue;
        }
        const script = refs.get(which);
        if (script === null || script === undefined) continue;
        try {
          got.push(...(await runPython(which, python, script, n, cfg)));
        } catch (err) {
          notes.set(which, `${which}: unavailable (${(err as Error).message})`);
          refs.set(which, null);
        }
      }
      samples.push(...got.map((x) => ({ ...x, round })));
      log(
        `  round ${round + 1}, world ${n} (load ${os.loadavg()[0].toFixed(1)}): ` +
          got.map((s) => `${s.impl.startsWith('segdist/') ? `${s.impl} ${s.mode}` : s.impl} ${fmtSize(s.elements)} ${s.busbw.toFixed(2)}`).join(', '),
      );
    }
  }
  for (const note of notes.values()) log(note);

  const rows: object[] = [];
  const pick = (impl: string, mode: string, world: number, elements: number) =>
    samples.filter((s) => s.impl === impl && s.mode === mode && s.world === world && s.elements === elements);
  log('');
  log('busbw GB/s, median over rounds (each run: median iteration)');
  log('ratio: median over rounds of ours / gloo in the same round [lowest-highest]');
  log('of ring: median over rounds of busbw / the plain TCP ring\'s in the same round (the ceiling), ours and gloo');
  log(` elements  world  ${'ours (data plane, mode)'.padEnd(29)}     ours     gloo   ratio [range]      ours ms   gloo ms      cpu ms/rank ours (sys)   gloo     ring  of ring: ours gloo`);
  for (const n of worlds) {
    for (const size of cfg.sizes) {
      const g = pick('gloo', 'inplace', n, size);
      const gBus = g.length ? median(g.map((s) => s.busbw)) : null;
      const ring = pick('tcp-ring', 'inplace', n, size);
      // Share of the ceiling, round by round (like the ratio), then the median.
      const ofRing = (xs: Sample[]) => {
        const r = xs.flatMap((s) => ring.filter((x) => x.round === s.round).map((x) => s.busbw / x.busbw));
        return r.length ? median(r) : null;
      };
      const glooOfRing = ofRing(g);
      for (const [impl, mode] of planes.flatMap((p) => cfg.modes.map((m) => [`segdist/${p}`, m] as const))) {
        const o = pick(impl, mode, n, size);
        const oBus = median(o.map((s) => s.busbw));
        const roundRatios = o.flatMap((s) => g.filter((x) => x.round === s.round).map((x) => s.busbw / x.busbw));
        const row = {
          elements: size,
          world: n,
          impl,
          mode,
          segdistBusbw: oBus,
          glooBusbw: gBus,
          // Each round's ratio is taken from runs next to each other in time (the load changes between
          // rounds); the median of those is the figure to read, the range shows the noise.
          ratio: roundRatios.length ? median(roundRatios) : null,
          ratioRange: roundRatios.length ? [Math.min(...roundRatios), Math.max(...roundRatios)] : null,
          segdistMs: median(o.map((s) => s.ms)),
          glooMs: g.length ? median(g.map((s) => s.ms)) : null,
          segdistCpuMs: median(o.map((s) => s.cpuMs)),
          segdistSysMs: median(o.map((s) => s.sysMs ?? 0)),
          glooCpuMs: g.length ? median(g.map((s) => s.cpuMs)) : null,
          ringBusbw: ring.length ? median(ring.map((s) => s.busbw)) : null,
          ringCpuMs: ring.length ? median(ring.map((s) => s.cpuMs)) : null,
          segdistOfRing: ofRing(o),
          glooOfRing,
          segdistThreadMs: o[0]?.threadMs
            ? Object.fromEntries((['main', 'zmqIo', 'other'] as const).map((kind) => [kind, median(o.map((s) => s.threadMs![kind]))]))
            : undefined,
          segdistRuns: o.map((s) => s.busbw),
          glooRuns: g.map((s) => s.busbw),
        };
        rows.push(row);
        log(
          `${fmtSize(size).padStart(9)}  ${String(n).padStart(5)}  ${`${impl} ${mode}`.padEnd(29)}  ${oBus.toFixed(2).padStart(10)}  ${gBus === null ? '       -' : gBus.toFixed(2).padStart(8)}` +
            `  ${row.ratio === null ? '     -' : row.ratio.toFixed(2).padStart(6)} ${row.ratioRange === null ? '           ' : `[${row.ratioRange[0].toFixed(2)}-${row.ratioRange[1].toFixed(2)}]`}  ${row.segdistMs.toFixed(1).padStart(11)}  ${row.glooMs === null ? '        -' : row.glooMs.toFixed(1).padStart(9)}` +
            `  ${row.segdistCpuMs.toFixed(1).padStart(20)} (${row.segdistSysMs.toFixed(1).padStart(5)})  ${row.glooCpuMs === null ? '     -' : row.glooCpuMs.toFixed(1).padStart(6)}` +
            `  ${row.ringBusbw === null ? '      -' : row.ringBusbw.toFixed(2).padStart(7)}  ${fmtShare(row.segdistOfRing).padStart(13)} ${fmtShare(row.glooOfRing).padStart(4)}` +
            (row.segdistThreadMs ? `   threads: main ${row.segdistThreadMs.main.toFixed(1)}, zmq I/O ${row.segdistThreadMs.zmqIo.toFixed(1)}, comm+other ${row.segdistThreadMs.other.toFixed(1)}` : ''),
        );
      }
    }
  }
  log(`load at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  if (json) console.log(JSON.stringify({ loadStart, loadEnd: os.loadavg(), gloo: notes.get('gloo') ?? 'ok', ring: notes.get('tcp-ring') ?? 'ok', rows, samples }));
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
