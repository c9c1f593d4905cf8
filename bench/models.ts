// Forward+backward time and peak memory of each benchmarked model, on the wasm and cpu backends, beside
// PyTorch (tools/bench_models.py, Debian's python3-torch) for the same model config, in the same run.
//
//   npx tsc -p . && node dist/bench/models.js [--models pspnet_r50,pspnet_r18] [--backends wasm,cpu]
//       [--size 256] [--batch 2] [--reps 3] [--warmup 1] [--classes 19] [--timeout-s 1800]
//       [--cpu-timeout-s 600] [--torch-threads N] [--no-torch] [--list] [--out .bench/models-....json]
//
// One step is what the trainer's backward costs: forward in training mode (BN on batch statistics),
// cross-entropy of the main output + 0.4 x cross-entropy of the auxiliary output against random labels
// (ignore index 255, no label ignored), gradients of every parameter (tf.variableGrads; PyTorch
// loss.backward() with the grads set to None before). No optimizer update. PyTorch computes the same
// loss for the same model config (tools/parity/reference.build_reference, state_dict names = segdist's);
// dropout is 0 in the configs below because the reference has none.
//
// Each (model, backend) runs in a fresh child process (this script with --child), and each model's
// PyTorch side in a fresh python process, so peak RSS is that of one model alone. Reported per run:
//   time     median over --reps timed steps after --warmup untimed ones, in CPU time of the process
//            (user + system) and in wall time. The machine is shared: with one thread on each side the
//            CPU time is the steadier figure and the table shows it (wall time where either side ran
//            more than one thread, e.g. --torch-threads 2); both are in the JSON.
//   memory   tensor peak: the most bytes of live tensors during one step (segdist: tf.profile's
//            peakBytes, the engine's tensor bytes after each kernel, variables and inputs included;
//            PyTorch: parameters, buffers and inputs plus the running peak of the allocator's events in
//            torch.profiler with profile_memory), measured in one extra step after the timed ones;
//            and the process's peak RSS (maxRSS / ru_maxrss) before that profiled step.
// Threads: tfjs's cpu backend is single-threaded JS and this wasm build runs one thread (the threaded
// build does not load under Node); PyTorch gets torch.set_num_threads(the backend's thread count), so
// both backends compare with PyTorch on 1 thread unless --torch-threads says otherwise. The PyTorch
// run is shared by backends with the same thread count.
// The cpu backend's stock convolution gradients are very slow (see DESIGN.md): a child that runs past
// its time limit (--cpu-timeout-s for cpu, --timeout-s otherwise) is stopped, and the row reports the
// steps it finished (status partial) or only the limit (status timeout).
//
// Results go to .bench/models-<time>.json (gitignored) and to a Markdown table on stdout.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { loadBackend, type ConcreteBackendName } from '../src/backend/load-backend';
import { buildModel, type ModelConfig } from '../src/models/build-model';
import { crossEntropy } from '../src/train/cross-entropy';
import { Rng } from '../src/util/rng';
import { cpuMs, wallMs } from './step-profile';

const REPO = path.resolve(__dirname, '../..');
const IGNORE_INDEX = 255;
const AUX_WEIGHT = 0.4;

// ---------------------------------------------------------------------------------------------------
// The benchmarked models: segdist model configs at mmseg's standard widths (stem/base 64, decode head
// 512, auxiliary FCN head 256, output stride 8 with contract_dilation, align_corners as mmseg's
// PSPNet configs here: align_corners true). Adding a model is one entry here; its backbone and head types must be in build-model.ts's
// tables and in tools/parity/reference.py's.

export interface BenchModel {
  /** What the table calls it. */
  label: string;
  model: ModelConfig;
}

const STANDARD = { norm: 'bn', align_corners: true } as const;
const AUX = { enabled: true, channels: 256, weight: AUX_WEIGHT, dropout: 0 };

function resnet(depth: ModelConfig['backbone']['depth']): ModelConfig['backbone'] {
  return { type: 'resnet', depth, stem: 'v1c', output_stride: 8, base_channels: 64, contract_dilation: true };
}

function psp(depth: ModelConfig['backbone']['depth']): ModelConfig {
  return {
    ...STANDARD,
    backbone: resnet(depth),
    head: { type: 'psp', channels: 512, dropout: 0, pool_scales: [1, 2, 3, 6] },
    aux: AUX,
  };
}

/** DeepLabV3+ as mmseg's deeplabv3plus_r50-d8: separable ASPP (dilations 12/24/36 at OS 8), c1 48. */
function deeplabv3plus(depth: ModelConfig['backbone']['depth']): ModelConfig {
  return {
    ...STANDARD,
    backbone: resnet(depth),
    head: { type: 'deeplabv3plus', channels: 512, dropout: 0, pool_scales: [1, 2, 3, 6], dilations: null, c1_channels: 48 },
    aux: AUX,
  };
}

/** iduta's PyConvSegNet-50: PyConvResNet-50 (its groups and full dilation), head channels 256. */
const PYCONVSEGNET_50: ModelConfig = {
  ...STANDARD,
  backbone: { type: 'pyconvresnet', depth: 50, stem: 'v1b', output_stride: 8, base_channels: 64, contract_dilation: false },
  head: { type: 'pyconvseg', channels: 256, dropout: 0, pool_scales: [1, 2, 3, 6] },
  aux: AUX,
};

export const MODELS: Record<string, BenchModel> = {
  pspnet_r50: { label: 'PSPNet ResNet-50 V1c', model: psp(50) },
  pspnet_r18: { label: 'PSPNet ResNet-18 V1c', model: psp(18) },
  pspnet_r101: { label: 'PSPNet ResNet-101 V1c', model: psp(101) },
  pyconvsegnet_50: { label: 'PyConvSegNet PyConvResNet-50', model: PYCONVSEGNET_50 },
  deeplabv3plus_r50: { label: 'DeepLabV3+ ResNet-50 V1c', model: deeplabv3plus(50) },
};

// ---------------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const flag = (name: string) => argv.includes(`--${name}`);

interface Shape {
  size: number;
  batch: number;
  classes: number;
  reps: number;
  warmup: number;
}

/** What a child (segdist) or tools/bench_models.py (PyTorch) prints as its last stdout line. */
export interface SideResult {
  status: 'ok' | 'partial' | 'timeout' | 'error';
  threads: number;
  /** Per timed step. */
  cpu_ms: number[];
  wall_ms: number[];
  warmup_cpu_ms?: number[];
  median_cpu_ms?: number;
  median_wall_ms?: number;
  tensor_peak_bytes?: number;
  peak_rss_bytes?: number;
  /** RSS before the model was built. */
  base_rss_bytes?: number;
  parameters?: number;
  loss?: number;
  version?: string;
  /** segdist on wasm: the size of the wasm heap after the run (it only grows). */
  wasm_heap_bytes?: number;
  error?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function loadString(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(' ');
}

// ---------------------------------------------------------------------------------------------------
// Child: one model on one backend. Progress on stderr, one JSON object per line on stdout (each step
// as it finishes, then the result), so a parent that stops a slow child still has the finished steps.

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function child(): Promise<void> {
  const name = opt('model', '');
  const backendName = opt('backend', 'wasm') as ConcreteBackendName;
  const bench = MODELS[name];
  if (!bench) throw new Error(`unknown model ${name}`);
  const s: Shape = {
    size: Number(opt('size', '256')), batch: Number(opt('batch', '2')), classes: Number(opt('classes', '19')),
    reps: Number(opt('reps', '3')), warmup: Number(opt('warmup', '1')),
  };
  const baseRss = process.memoryUsage().rss;
  await loadBackend(backendName);
  const threads = backendName === 'wasm' ? wasmThreads() : 1;
  const model = buildModel(bench.model, s.classes, 0);
  const vars = model.namedParameters().map(([, v]) => v);
  const rng = new Rng(1);
  const n = s.batch * s.size * s.size;
  const images = new Float32Array(n * 3);
  for (let i = 0; i < images.length; i++) images[i] = rng.uniform(-2, 2);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = rng.int(s.classes);
  const x = tf.tensor4d(images, [s.batch, s.size, s.size, 3]);
  const y = tf.tensor3d(labels, [s.batch, s.size, s.size], 'int32');

  let lastLoss = NaN;
  const step = (i: number) => {
    const { value, grads } = tf.variableGrads(() => {
      const { out, aux } = model.forward(x, { training: true, seed: i });
      const main = crossEntropy(out, y, IGNORE_INDEX);
      return aux ? (tf.add(main, tf.mul(crossEntropy(aux, y, IGNORE_INDEX), AUX_WEIGHT)) as tf.Scalar) : main;
    }, vars);
    // Reading the loss waits for the step to finish (wasm and cpu compute synchronously anyway).
    lastLoss = value.dataSync()[0];
    tf.dispose([value, ...Object.values(grads)]);
  };
  const log = (msg: string) => process.stderr.write(`  [${name} ${backendName}] ${msg}\n`);
  log(`${(model.numParameters() / 1e6).toFixed(2)}M parameters, ${s.batch}x${s.size}x${s.size}, ${threads} thread(s)`);
  const warmupCpu: number[] = [];
  for (let i = 0; i < s.warmup; i++) {
    const c0 = cpuMs();
    step(i);
    warmupCpu.push(cpuMs() - c0);
    emit({ event: 'warmup', cpu_ms: warmupCpu[i] });
    log(`warm-up ${i + 1}/${s.warmup}: ${(warmupCpu[i] / 1000).toFixed(1)} s cpu, loss ${lastLoss.toFixed(4)}`);
  }
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < s.reps; i++) {
    const w0 = wallMs();
    const c0 = cpuMs();
    step(s.warmup + i);
    cpu.push(cpuMs() - c0);
    wall.push(wallMs() - w0);
    emit({ event: 'step', cpu_ms: cpu[i], wall_ms: wall[i] });
    log(`step ${i + 1}/${s.reps}: ${(cpu[i] / 1000).toFixed(1)} s cpu, ${(wall[i] / 1000).toFixed(1)} s wall; load ${loadString()}`);
  }
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const profile = await tf.profile(() => step(s.warmup + s.reps));
  log(`tensor peak ${(profile.peakBytes / 2 ** 20).toFixed(0)} MB, peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MB`);
  const result: SideResult = {
    status: 'ok', threads, cpu_ms: cpu, wall_ms: wall, warmup_cpu_ms: warmupCpu,
    median_cpu_ms: median(cpu), median_wall_ms: median(wall),
    tensor_peak_bytes: profile.peakBytes, peak_rss_bytes: peakRss, base_rss_bytes: baseRss,
    parameters: model.numParameters(), loss: lastLoss, version: `tfjs ${tf.version.tfjs}`,
    wasm_heap_bytes: backendName === 'wasm' ? wasmHeapBytes() : undefined,
  };
  emit({ event: 'result', ...result });
  tf.dispose([x, y]);
  model.dispose();
}

/** The wasm backend's thread count (1 unless the threaded build loaded). */
function wasmThreads(): number {
  const wasm = require('@tensorflow/tfjs-backend-wasm') as { getThreadsCount?: () => number };
  return wasm.getThreadsCount?.() ?? 1;
}

function wasmHeapBytes(): number | undefined {
  const backend = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return backend.wasm?.HEAPU8?.buffer.byteLength;
}

// ---------------------------------------------------------------------------------------------------
// Parent: runs the children and PyTorch, prints the table, writes the JSON.

/** Parses a child's stdout lines into a result, whether it finished or was stopped. */
function collect(stdout: string, timedOut: boolean, failure: string | undefined, limitS: number): SideResult {
  const events = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const done = events.find((e) => e.event === 'result');
  if (done) {
    const { event: _event, ...rest } = done;
    return rest as unknown as SideResult;
  }
  const said = events.find((e) => e.event === 'error')?.error as string | undefined;
  if (said) failure = `${failure ?? 'failed'}: ${said}`;
  const steps = events.filter((e) => e.event === 'step');
  const warm = events.filter((e) => e.event === 'warmup').map((e) => e.cpu_ms as number);
  const cpu = steps.map((e) => e.cpu_ms as number);
  const wall = steps.map((e) => e.wall_ms as number);
  return {
    status: timedOut ? (cpu.length ? 'partial' : 'timeout') : 'error', threads: 1, cpu_ms: cpu, wall_ms: wall,
    warmup_cpu_ms: warm, median_cpu_ms: cpu.length ? median(cpu) : undefined,
    median_wall_ms: wall.length ? median(wall) : undefined,
    error: timedOut ? `stopped after ${limitS} s` : failure,
  };
}

function runChild(name: string, backend: string, s: Shape, limitS: number): SideResult {
  const args = [__filename, '--child', '--model', name, '--backend', backend, '--size', String(s.size),
    '--batch', String(s.batch), '--classes', String(s.classes), '--reps', String(s.reps), '--warmup', String(s.warmup)];
  const p = spawnSync(process.execPath, args, {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: limitS * 1000, killSignal: 'SIGKILL',
    maxBuffer: 16 << 20,
  });
  const timedOut = (p.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  const failure = p.status !== 0 ? `exit ${p.status ?? p.signal}${p.error ? `: ${p.error.message}` : ''}` : undefined;
  return collect(p.stdout ?? '', timedOut, failure, limitS);
}

function runTorch(name: string, threads: number, s: Shape, limitS: number, tmp: string): SideResult {
  const spec = path.join(tmp, `${name}-${threads}.json`);
  fs.writeFileSync(spec, JSON.stringify({
    model: MODELS[name].model, num_classes: s.classes, size: s.size, batch: s.batch, reps: s.reps,
    warmup: s.warmup, threads, aux_weight: AUX_WEIGHT, ignore_index: IGNORE_INDEX, label: name,
  }));
  // torch.set_num_threads does not reach the BLAS's own pool (OpenBLAS starts one per core), so the
  // thread count goes into the environment too.
  const env = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  const p = spawnSync('/usr/bin/python3', [path.join(REPO, 'tools', 'bench_models.py'), '--spec', spec], {
    env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: limitS * 1000, killSignal: 'SIGKILL',
    maxBuffer: 16 << 20,
  });
  const timedOut = (p.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  const failure = p.status !== 0 ? `exit ${p.status ?? p.signal}${p.error ? `: ${p.error.message}` : ''}` : undefined;
  const r = collect(p.stdout ?? '', timedOut, failure, limitS);
  r.threads = threads;
  return r;
}

interface Row {
  model: string;
  backend: string;
  segdist: SideResult;
  torch?: SideResult;
}

const mb = (b: number | undefined) => (b === undefined ? '-' : (b / 2 ** 20).toFixed(0));
const ratio = (a: number | undefined, b: number | undefined) =>
  (a === undefined || b === undefined || b === 0 ? '-' : (a / b).toFixed(2));

type Clock = 'cpu' | 'wall';

const medianOf = (r: SideResult | undefined, clock: Clock) => (clock === 'cpu' ? r?.median_cpu_ms : r?.median_wall_ms);

function timeCell(r: SideResult | undefined, limitS: number, clock: Clock): string {
  if (!r) return '-';
  if (r.status === 'timeout') {
    // Stopped before a timed step: the warm-up step, if it finished, still says how slow it is.
    const w = r.warmup_cpu_ms?.length ? `; warm-up ${r.warmup_cpu_ms[0].toFixed(0)} cpu` : '';
    return `stopped after ${limitS} s wall${w}`;
  }
  const m = medianOf(r, clock);
  if (m === undefined) return r.error ? `${r.status}: ${r.error}` : r.status;
  const t = m.toFixed(0);
  return r.status === 'partial' ? `${t} (${r.cpu_ms.length} of reps)` : t;
}

function printTable(rows: Row[], limits: Record<string, number>): void {
  console.log('\n| model | backend | threads | segdist ms | PyTorch ms | ratio | segdist tensor peak MB | PyTorch tensor peak MB | ratio | segdist peak RSS MB | PyTorch peak RSS MB | ratio |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  let walls = false;
  for (const { model, backend, segdist: s, torch: t } of rows) {
    const threads = `${s.threads} / ${t ? t.threads : '-'}`;
    // CPU time is the steadier clock on a shared machine, but it counts every thread: with more
    // than one on either side, compare wall time.
    const clock: Clock = s.threads > 1 || (t?.threads ?? 1) > 1 ? 'wall' : 'cpu';
    walls ||= clock === 'wall';
    const mark = clock === 'wall' ? ' (wall)' : '';
    console.log(
      `| ${model} | ${backend} | ${threads} | ${timeCell(s, limits[backend], clock)}${mark} | ${timeCell(t, limits.torch, clock)}${mark} | ` +
      `${ratio(medianOf(s, clock), medianOf(t, clock))} | ${mb(s.tensor_peak_bytes)} | ${mb(t?.tensor_peak_bytes)} | ` +
      `${ratio(s.tensor_peak_bytes, t?.tensor_peak_bytes)} | ${mb(s.peak_rss_bytes)} | ${mb(t?.peak_rss_bytes)} | ` +
      `${ratio(s.peak_rss_bytes, t?.peak_rss_bytes)} |`,
    );
  }
  console.log('\nms: median CPU time of one forward+backward step (process user + system)' +
              `${walls ? '; rows marked (wall), where a side ran more than one thread: median wall time' : ''}; ` +
              'ratio = segdist / PyTorch. threads: segdist / PyTorch (torch.set_num_threads). Tensor peak: live ' +
              'tensor bytes during a step; peak RSS: the process\'s, runtime included.');
}

async function parent(): Promise<void> {
  if (flag('list')) {
    for (const [k, m] of Object.entries(MODELS)) console.log(`${k.padEnd(14)} ${m.label}`);
    return;
  }
  const names = opt('models', Object.keys(MODELS).join(',')).split(',').filter(Boolean);
  for (const n of names) {
    if (!MODELS[n]) throw new Error(`--models: unknown model ${n}; known: ${Object.keys(MODELS).join(', ')}`);
  }
  const backends = opt('backends', 'wasm,cpu').split(',').filter(Boolean);
  for (const b of backends) {
    if (b !== 'wasm' && b !== 'cpu') throw new Error(`--backends: ${b} is not wasm or cpu`);
  }
  const s: Shape = {
    size: Number(opt('size', '256')), batch: Number(opt('batch', '2')), classes: Number(opt('classes', '19')),
    reps: Number(opt('reps', '3')), warmup: Number(opt('warmup', '1')),
  };
  const limits: Record<string, number> = {
    wasm: Number(opt('timeout-s', '1800')), cpu: Number(opt('cpu-timeout-s', '600')), torch: Number(opt('timeout-s', '1800')),
  };
  const torchThreads = opt('torch-threads', '');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = path.resolve(opt('out', path.join(REPO, '.bench', `models-${stamp}.json`)));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-bench-models-'));
  const loadStart = loadString();
  console.log(`bench:models: ${names.join(', ')} on ${backends.join(', ')}; batch ${s.batch}, ${s.size}x${s.size}, ` +
              `${s.classes} classes; ${s.warmup} warm-up + ${s.reps} timed steps; ${os.cpus().length} cores, ` +
              `load ${loadStart}; PyTorch ${flag('no-torch') ? 'skipped' : 'beside'}`);
  const rows: Row[] = [];
  for (const name of names) {
    const torchRuns = new Map<number, SideResult>();
    for (const backend of backends) {
      console.log(`${name} (${MODELS[name].label}) on ${backend} ...`);
      const ours = runChild(name, backend, s, limits[backend]);
      if (ours.status !== 'ok') console.log(`  segdist ${backend}: ${ours.status}${ours.error ? ` (${ours.error})` : ''}`);
      let torch: SideResult | undefined;
      if (!flag('no-torch')) {
        const threads = torchThreads ? Number(torchThreads) : ours.threads;
        torch = torchRuns.get(threads);
        if (!torch) {
          console.log(`${name} in PyTorch, ${threads} thread(s) ...`);
          torch = runTorch(name, threads, s, limits.torch, tmp);
          if (torch.status !== 'ok') console.log(`  PyTorch: ${torch.status}${torch.error ? ` (${torch.error})` : ''}`);
          torchRuns.set(threads, torch);
        }
      }
      rows.push({ model: name, backend, segdist: ours, torch });
    }
  }
  const loadEnd = loadString();
  printTable(rows, limits);
  console.log(`load average at the start ${loadStart}, at the end ${loadEnd}`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({
    date: new Date().toISOString(), shape: s, cores: os.cpus().length, cpu: os.cpus()[0]?.model,
    load_start: loadStart, load_end: loadEnd, limits_s: limits,
    models: Object.fromEntries(names.map((n) => [n, MODELS[n]])), rows,
  }, null, 2)}\n`);
  console.log(`results: ${path.relative(process.cwd(), out)}`);
  fs.rmSync(tmp, { recursive: true, force: true });
}

(flag('child') ? child() : parent()).catch((err) => {
  console.error(err);
  // A child also says why on stdout, for its row (the wasm heap's 4 GB running out shows as an abort).
  if (flag('child')) {
    const heap = tf.getBackend() === 'wasm' ? wasmHeapBytes() : undefined;
    const why = String(err instanceof Error ? err.message : err).split('\n')[0];
    emit({ event: 'error', error: heap ? `${why} (wasm heap ${(heap / 2 ** 20).toFixed(0)} MB)` : why });
  }
  process.exit(1);
});
