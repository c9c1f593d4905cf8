// Per-kernel timing for the step benchmark: every kernel registered for a backend is re-registered
// behind a wrapper that times it with hrtime. Only the outermost kernel call is timed (kernels that
// call other kernels through the registry, as ours do, are charged in full to the outer one), so the
// per-kernel totals add up to the time spent below the engine; the rest of a step is engine and op
// overhead (tape, shape checks, JS op code), reported as "(outside kernels)".
//
// Why not tf.profile(): it reads every kernel's output back to check it, and on wasm its kernelMs
// comes from the same wall clock anyway; a wrapper costs two clock reads per kernel.
//
// The clock is this process's CPU time (process.cpuUsage, user + system) by default: the machine is
// shared, and wall time then mostly measures the other processes. `clock = 'wall'` uses hrtime.
import * as tf from '@tensorflow/tfjs';

export interface KernelStat {
  name: string;
  ms: number;
  calls: number;
  /** Floating-point operations per call, where known (convolutions, matmuls). */
  flops?: number;
}

/** Milliseconds of CPU time this process has used. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export function wallMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export class KernelProfiler {
  clock: () => number = cpuMs;
  private readonly stats = new Map<string, KernelStat>();
  private readonly originals: [tf.KernelConfig, tf.KernelFunc][] = [];
  private depth = 0;
  enabled = false;
  /** Also keep a line per kernel and input shapes ("Conv2D [8,16,16,64] [3,3,64,64] s1 d2"). */
  byShape = false;

  constructor(private readonly backendName: string) {}

  /**
   * Wraps every kernel currently registered for the backend. The config objects are patched in place
   * (not re-registered), so code that checks which config the registry holds still sees its own.
   */
  install(): void {
    for (const config of tf.getKernelsForBackend(this.backendName)) this.wrap(config);
  }

  /** Wraps one kernel config in place (also one that is not registered now but may be later). */
  wrap(config: tf.KernelConfig): void {
    {
      if (this.originals.some(([c]) => c === config)) return;
      const inner = config.kernelFunc;
      const wrapped: tf.KernelFunc = (args) => {
        if (!this.enabled || this.depth > 0) {
          this.depth++;
          try {
            return inner(args);
          } finally {
            this.depth--;
          }
        }
        this.depth++;
        const t0 = this.clock();
        try {
          return inner(args);
        } finally {
          const ms = this.clock() - t0;
          this.depth--;
          this.add(config.kernelName, ms);
          if (this.byShape) this.add(`  ${config.kernelName} ${describeCall(args)}`, ms, flopsOf(config.kernelName, args));
        }
      };
      this.originals.push([config, inner]);
      (config as { kernelFunc: tf.KernelFunc }).kernelFunc = wrapped;
    }
  }

  private add(key: string, ms: number, flops?: number): void {
    let s = this.stats.get(key);
    if (s === undefined) {
      s = { name: key, ms: 0, calls: 0, flops };
      this.stats.set(key, s);
    }
    s.ms += ms;
    s.calls++;
  }

  /** Puts the unwrapped kernels back. */
  uninstall(): void {
    for (const [config, inner] of this.originals) (config as { kernelFunc: tf.KernelFunc }).kernelFunc = inner;
    this.originals.length = 0;
  }

  reset(): void {
    this.stats.clear();
  }

  /** Kernels by total time; with byShape, the per-shape lines separately (second array). */
  snapshot(): KernelStat[] {
    return [...this.stats.values()].filter((s) => !s.name.startsWith(' '))
        .map((s) => ({ ...s })).sort((a, b) => b.ms - a.ms);
  }

  shapeSnapshot(): KernelStat[] {
    return [...this.stats.values()].filter((s) => s.name.startsWith(' '))
        .map((s) => ({ ...s })).sort((a, b) => b.ms - a.ms);
  }
}

/** 2 * multiply-adds of a convolution or matmul call; undefined for other kernels. */
function flopsOf(kernelName: string, args: Parameters<tf.KernelFunc>[0]): number | undefined {
  const inputs = args.inputs as Record<string, tf.TensorInfo>;
  const a = args.attrs as Record<string, unknown>;
  const conv = (xShape: number[], filterShape: number[]) => {
    const info = tf.backend_util.computeConv2DInfo(
        xShape as [number, number, number, number], filterShape as [number, number, number, number],
        a.strides as number, (a.dilations ?? 1) as number, a.pad as 'same', a.dimRoundingMode as 'floor');
    return 2 * info.batchSize * info.outHeight * info.outWidth * info.filterHeight * info.filterWidth *
        info.inChannels * info.outChannels;
  };
  try {
    switch (kernelName) {
      case 'Conv2D': return conv(inputs.x.shape, inputs.filter.shape);
      case 'Conv2DBackpropInput': return conv(a.inputShape as number[], inputs.filter.shape);
      case 'Conv2DBackpropFilter': return conv(inputs.x.shape, a.filterShape as number[]);
      case 'BatchMatMul': {
        const [sa, sb] = [inputs.a.shape, inputs.b.shape];
        const batch = Math.max(sa.length > 2 ? sa[0] : 1, sb.length > 2 ? sb[0] : 1);
        const m = a.transposeA ? sa[sa.length - 1] : sa[sa.length - 2];
        const k = a.transposeA ? sa[sa.length - 2] : sa[sa.length - 1];
        const n = a.transposeB ? sb[sb.length - 2] : sb[sb.length - 1];
        return 2 * batch * m * k * n;
      }
      default: return undefined;
    }
  } catch {
    return undefined;
  }
}

function describeCall(args: Parameters<tf.KernelFunc>[0]): string {
  const shapes = Object.values(args.inputs).map((t) => `[${(t as tf.TensorInfo).shape}]`).join(' ');
  const a = args.attrs as Record<string, unknown> | undefined;
  const extra: string[] = [];
  for (const k of ['strides', 'dilations', 'pad', 'transposeA', 'transposeB', 'perm']) {
    if (a !== undefined && a[k] !== undefined) extra.push(`${k}=${JSON.stringify(a[k])}`);
  }
  return `${shapes} ${extra.join(' ')}`;
}

/** Prints a table: kernel, total ms per step, calls per step, share of `stepMs` (the mean step). */
export function printBreakdown(stats: KernelStat[], steps: number, stepMs: number, top = 40): void {
  const kernelMs = stats.reduce((a, s) => a + s.ms, 0) / steps;
  const width = Math.max(28, ...stats.slice(0, top).map((s) => s.name.length + 2));
  const pad = (s: string, _n: number) => s.padEnd(width);
  const num = (x: number, n: number, d = 1) => x.toFixed(d).padStart(n);
  console.log(`  ${pad('kernel', 28)}${'ms/step'.padStart(10)}${'calls'.padStart(8)}${'share'.padStart(8)}`);
  for (const s of stats.slice(0, top)) {
    const rate = s.flops === undefined ? '' : `  ${(s.flops * s.calls / s.ms / 1e6).toFixed(1)} GFLOP/s`;
    console.log(`  ${pad(s.name, 28)}${num(s.ms / steps, 10)}${num(s.calls / steps, 8, 0)}` +
                `${num((100 * s.ms) / steps / stepMs, 7)}%${rate}`);
  }
  if (stats.length > top) {
    const rest = stats.slice(top);
    const ms = rest.reduce((a, s) => a + s.ms, 0) / steps;
    const calls = rest.reduce((a, s) => a + s.calls, 0) / steps;
    console.log(`  ${pad(`(${rest.length} more kernels)`, 28)}${num(ms, 10)}${num(calls, 8, 0)}${num((100 * ms) / stepMs, 7)}%`);
  }
  const calls = stats.reduce((a, s) => a + s.calls, 0) / steps;
  console.log(`  ${pad('(all kernels)', 28)}${num(kernelMs, 10)}${num(calls, 8, 0)}${num((100 * kernelMs) / stepMs, 7)}%`);
  console.log(`  ${pad('(outside kernels)', 28)}${num(stepMs - kernelMs, 10)}${''.padStart(8)}` +
              `${num((100 * (stepMs - kernelMs)) / stepMs, 7)}%`);
}
