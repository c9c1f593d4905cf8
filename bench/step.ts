// One training step of the default model on the wasm backend, with a per-kernel breakdown.
//   npx tsc -p . && node dist/bench/step.js [--base 16 --batch 8 --size 128 --head 64 --aux 32]
//       [--steps 5] [--warmup 2] [--also-r18] [--only-r18] [--stock] [--ab] [--by-shape]
// The step is the trainer's own (trainStep: forward, cross-entropy + aux loss, variableGrads, SGD,
// metrics). Prints the median step time, then kernels by total time per step (ms, calls, share).
// --also-r18 repeats it for the real PSPNet-R18 (base 64, head 512, aux 256) at batch 4.
// --stock puts the stock wasm kernels back in place of our replacements (no conv gradient kernels
// at all: Conv2DBackpropFilter then fails, so --stock is only useful with --ab off and small models).
// --ab alternates steps with stock wasm Identity, MaxPoolGrad, Slice and SplitV and no SIMD loops (A;
// the conv gradient kernels then fill their columns in JS) and with ours (B) in one process, profiled,
// and prints both breakdowns and the B/A step-time ratio: on a shared machine only such ratios mean
// much.
import * as tf from '@tensorflow/tfjs';
import * as os from 'node:os';
import { loadBackend } from '../src/backend/load-backend';
import { registerWasmKernels, unregisterWasmKernels } from '../src/backend/register-wasm-kernels';
import { disableSimdLoops } from '../src/backend/wasm-simd';
import { buildModel, type ModelConfig } from '../src/models/build-model';
import { trainStep, type StepBatch } from '../src/train/train-step';
import { Sgd } from '../src/train/sgd';
import { TrainMetrics } from '../src/train/train-metrics';
import { Rng } from '../src/util/rng';
import { cpuMs, KernelProfiler, printBreakdown, wallMs } from './step-profile';

interface Case {
  base: number;
  head: number;
  aux: number;
  batch: number;
  size: number;
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const NUM_CLASSES = 5;
// CPU time of this process unless --wall: on a shared machine wall time measures the neighbours.
const clock = flag('wall') ? wallMs : cpuMs;
const clockName = flag('wall') ? 'wall' : 'cpu';

function modelConfig(c: Case): ModelConfig {
  return {
    norm: 'bn',
    align_corners: true,
    backbone: { type: 'resnet', depth: 18, stem: 'v1b', output_stride: 8, base_channels: c.base },
    head: { type: 'psp', channels: c.head, dropout: 0.1, pool_scales: [1, 2, 3, 6] },
    aux: { enabled: true, channels: c.aux, weight: 0.4, dropout: 0.1 },
  };
}

function syntheticBatch(c: Case, seed: number): StepBatch {
  const rng = new Rng(seed);
  const n = c.batch * c.size * c.size;
  const images = new Float32Array(n * 3);
  for (let i = 0; i < images.length; i++) images[i] = rng.uniform(-2, 2);
  const labels = new Int32Array(n);
  // Blocky labels with a few ignored pixels, like the synthetic dataset's shapes.
  for (let i = 0; i < n; i++) {
    const x = i % c.size;
    const y = Math.floor(i / c.size) % c.size;
    labels[i] = ((x >> 4) + (y >> 4) + Math.floor(i / (c.size * c.size))) % NUM_CLASSES;
    if (rng.next() < 0.01) labels[i] = 255;
  }
  return { images, labels, n: c.batch, h: c.size, w: c.size };
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function runCase(c: Case, profiler: KernelProfiler, steps: number, warmup: number): void {
  const model = buildModel(modelConfig(c), NUM_CLASSES, 0);
  const trainable = model.namedParameters();
  const optimizer = new Sgd(trainable, { momentum: 0.9, weightDecay: 5e-4, nesterov: false });
  const metrics = new TrainMetrics(NUM_CLASSES, 255);
  const batch = syntheticBatch(c, 1);
  const step = (i: number) => trainStep(model, trainable, optimizer, metrics, batch, {
    ignoreIndex: 255, auxWeight: 0.4, lr: 0.01, ctx: { training: true, seed: i },
  });
  const label = `base ${c.base}, head ${c.head}, aux ${c.aux}, ${c.size}x${c.size}, batch ${c.batch}`;
  console.log(`\n== ${label}: ${(model.numParameters() / 1e6).toFixed(2)}M parameters`);

  if (flag('ab')) {
    runAB(c, step, profiler, steps, warmup, metrics);
  } else {
    runPlain(step, profiler, steps, warmup, metrics);
  }
  metrics.dispose();
  optimizer.dispose();
  model.dispose();
}

function loadString(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(' ');
}

/** Stock and our configs of the wasm kernels that --ab swaps, wrapped by the profiler. */
let swaps: { stock: tf.KernelConfig; ours: tf.KernelConfig }[] = [];

function prepareSwaps(profiler: KernelProfiler): void {
  const names = [tf.Identity, tf.MaxPoolGrad, tf.Slice, tf.SplitV];
  unregisterWasmKernels();
  const stock = names.map((n) => tf.getKernel(n, 'wasm')!);
  registerWasmKernels();
  const ours = names.map((n) => tf.getKernel(n, 'wasm')!);
  swaps = names.map((_, i) => ({ stock: stock[i], ours: ours[i] }));
  for (const s of swaps) profiler.wrap(s.stock);
}

/** Side A (false: stock kernels, no SIMD loops) or B (true: ours). */
function setSide(on: boolean): void {
  disableSimdLoops(!on);
  for (const s of swaps) {
    const want = on ? s.ours : s.stock;
    if (tf.getKernel(want.kernelName, 'wasm') !== want) {
      tf.unregisterKernel(want.kernelName, 'wasm');
      tf.registerKernel(want);
    }
  }
}

function runAB(c: Case, step: (i: number) => void, profiler: KernelProfiler, steps: number, warmup: number,
               metrics: TrainMetrics): void {
  const sides = [false, true];
  for (let i = 0; i < warmup; i++) {
    for (const on of sides) {
      setSide(on);
      step(i);
    }
  }
  const times: number[][] = [[], []];
  const walls: number[][] = [[], []];
  const tensors: number[] = [0, 0];
  const stats: ReturnType<KernelProfiler['snapshot']>[] = [[], []];
  const shapeStats: ReturnType<KernelProfiler['snapshot']>[] = [[], []];
  // Accumulate each side's kernel times separately: profile one side per pass.
  type Stat = ReturnType<KernelProfiler['snapshot']>[number];
  const merged = [new Map<string, Stat>(), new Map<string, Stat>()];
  const mergedShapes = [new Map<string, Stat>(), new Map<string, Stat>()];
  for (let i = 0; i < steps; i++) {
    for (const [k, on] of (i % 2 === 0 ? [0, 1] : [1, 0]).map((k) => [k, sides[k]] as const)) {
      setSide(on);
      profiler.reset();
      profiler.enabled = true;
      const before = tf.memory().numTensors;
      const w0 = wallMs();
      const t0 = clock();
      step(warmup + i);
      times[k].push(clock() - t0);
      walls[k].push(wallMs() - w0);
      profiler.enabled = false;
      tensors[k] += tf.memory().numTensors - before;
      for (const [snap, into] of [[profiler.snapshot(), merged[k]], [profiler.shapeSnapshot(), mergedShapes[k]]] as const) {
        for (const s of snap) {
          const e = into.get(s.name) ?? { name: s.name, ms: 0, calls: 0, flops: s.flops };
          e.ms += s.ms;
          e.calls += s.calls;
          into.set(s.name, e);
        }
      }
    }
  }
  setSide(true);
  for (const k of [0, 1]) {
    stats[k] = [...merged[k].values()].sort((a, b) => b.ms - a.ms);
    shapeStats[k] = [...mergedShapes[k].values()].sort((a, b) => b.ms - a.ms);
  }
  const m = metrics.read();
  console.log(`A/B over ${steps} steps each, interleaved; loss ${m.loss.toFixed(4)}; load ${loadString()}`);
  for (const k of [0, 1]) {
    const side = k === 0 ? 'A: stock Identity/MaxPoolGrad/Slice/SplitV, no SIMD loops' : 'B: our kernels';
    console.log(`\n[${side}] step median ` +
                `${median(times[k]).toFixed(0)} ms ${clockName} (min ${Math.min(...times[k]).toFixed(0)}; ` +
                `mean ${mean(times[k]).toFixed(0)}; wall median ${median(walls[k]).toFixed(0)}); ` +
                `tensors leaked ${tensors[k]}`);
    // Shares are of the mean step: kernel totals are sums over all steps.
    printBreakdown(stats[k], steps, mean(times[k]), arg('top', 30));
    if (profiler.byShape) {
      console.log('  by call shape:');
      printBreakdown(shapeStats[k], steps, mean(times[k]), arg('top', 30));
    }
  }
  const ratios = times[1].map((t, i) => t / times[0][i]);
  console.log(`\nB/A step time: median of per-pair ratios ${median(ratios).toFixed(3)} ` +
              `(pairs: ${ratios.map((r) => r.toFixed(2)).join(' ')}); ` +
              `ratio of medians ${(median(times[1]) / median(times[0])).toFixed(3)}; speed-up ` +
              `${(median(times[0]) / median(times[1])).toFixed(2)}x`);
  void c;
}

function runPlain(step: (i: number) => void, profiler: KernelProfiler, steps: number, warmup: number,
                  metrics: TrainMetrics): void {
  for (let i = 0; i < warmup; i++) step(i);
  const tensorsBefore = tf.memory().numTensors;
  // Alternate plain and profiled steps so both see the same load.
  const plain: number[] = [];
  const profiled: number[] = [];
  profiler.reset();
  for (let i = 0; i < steps; i++) {
    for (const on of [false, true]) {
      profiler.enabled = on;
      const t0 = clock();
      step(warmup + 2 * i + (on ? 1 : 0));
      const ms = clock() - t0;
      (on ? profiled : plain).push(ms);
    }
  }
  profiler.enabled = false;
  const leaked = tf.memory().numTensors - tensorsBefore;
  const stats = metrics.read();
  console.log(`step: median ${median(plain).toFixed(0)} ms ${clockName} (min ${Math.min(...plain).toFixed(0)}), ` +
              `profiled median ${median(profiled).toFixed(0)} ms; ${steps} steps each; ` +
              `loss ${stats.loss.toFixed(4)}; tensors leaked ${leaked}; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  printBreakdown(profiler.snapshot(), steps, mean(profiled));
  if (profiler.byShape) {
    console.log('  by call shape:');
    printBreakdown(profiler.shapeSnapshot(), steps, mean(profiled), arg('top', 40));
  }
}

async function main(): Promise<void> {
  await loadBackend('wasm');
  if (flag('stock')) unregisterWasmKernels();
  const profiler = new KernelProfiler('wasm');
  // Swaps first: they re-register our kernels, which install() must then wrap.
  if (flag('ab')) prepareSwaps(profiler);
  profiler.install();
  profiler.byShape = flag('by-shape');
  profiler.clock = clock;
  console.log(`wasm, ${flag('stock') ? 'stock kernels' : 'segdist kernels'}; load ${loadString()}`);
  const steps = arg('steps', 5);
  const warmup = arg('warmup', 2);
  if (!flag('only-r18')) {
    runCase({ base: arg('base', 16), head: arg('head', 64), aux: arg('aux', 32), batch: arg('batch', 8),
              size: arg('size', 128) }, profiler, steps, warmup);
  }
  if (flag('also-r18') || flag('only-r18')) {
    runCase({ base: 64, head: 512, aux: 256, batch: 4, size: 128 }, profiler, arg('r18-steps', 3),
            arg('r18-warmup', 1));
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
