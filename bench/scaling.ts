// Data-parallel scaling of a real training run: `node dist/bench/scaling.js [--gpus 1,2] [--global-batch 8]
// [--train-count 96] [--epochs 1] [--warmup-steps 2] [--backend NAME] [--keep] [--json] [-- key=value ...]`.
//
// Runs `segdist train` (bin/run.js, the compiled CLI in dist/) on the embedded default config: the
// default synthetic dataset, generated once into a temporary folder, a short schedule (overrides below),
// once per trainer count, keeping the global batch fixed (batch_size = global / trainers, so every run
// makes the same number of steps over the same images). From each run's metrics.jsonl it reads the
// 'train' records (batch_time: wall seconds per step, averaged over a logging interval), and from its
// TensorBoard events the train/comm_share scalars (seconds in collectives / wall seconds, rank 0). The
// first `--warmup-steps` steps (kernel compilation, first allocations) are left out.
//
// images/s = global batch / seconds per step; scaling efficiency = images/s with N trainers / (N x
// images/s with 1). On a machine with fewer free cores than trainers (2 trainers on this 2-core
// machine, shared with other work) the efficiency says as much about the machine as about segdist, so
// the load average is printed with every run.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readEventDir } from '../src/tensorboard/read-events';

interface RunResult {
  gpus: number;
  batchPerTrainer: number;
  steps: number;
  secondsPerStep: number;
  imagesPerS: number;
  dataSecondsPerStep: number;
  commShare: number | null;
  wallS: number;
  loadBefore: number;
  loadAfter: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The folder holding bin/run.js and package.json: searched upward from this file (dist/bench/ or elsewhere). */
function repoRoot(): string {
  for (let d = __dirname; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'bin', 'run.js')) && fs.existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) throw new Error(`bench/scaling: no bin/run.js above ${__dirname}`);
  }
}

function runCli(root: string, args: string[], logFile: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const out = fs.openSync(logFile, 'w');
    const child = spawn(process.execPath, [path.join(root, 'bin', 'run.js'), ...args], {
      cwd: root,
      stdio: ['ignore', out, out],
      env: { ...process.env, SEGDIST_DEBUG: '1' },
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      fs.closeSync(out);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

function readJsonl(file: string): Record<string, unknown>[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function runOne(root: string, tmp: string, gpus: number, globalBatch: number, common: string[], backend: string | undefined): Promise<RunResult> {
  if (globalBatch % gpus !== 0) throw new Error(`--global-batch ${globalBatch} does not split evenly over ${gpus} trainers`);
  const batch = globalBatch / gpus;
  const workDir = path.join(tmp, `gpus${gpus}`);
  fs.rmSync(workDir, { recursive: true, force: true });
  const args = [
    'train',
    ...(gpus > 1 ? ['--gpus', String(gpus)] : []),
    ...(backend ? ['--backend', backend] : []),
    `work_dir=${workDir}`,
    `data.train.batch_size=${batch}`,
    ...common,
  ];
  const loadBefore = os.loadavg()[0];
  const t0 = Date.now();
  const log = path.join(tmp, `gpus${gpus}.log`);
  const code = await runCli(root, args, log);
  const wallS = (Date.now() - t0) / 1000;
  if (code !== 0) throw new Error(`segdist train --gpus ${gpus} exited with ${code}; its output:\n${fs.readFileSync(log, 'utf8').slice(-4000)}`);

  const records = readJsonl(path.join(workDir, 'metrics.jsonl')).filter((r) => r.kind === 'train');
  const warmup = Number(arg('--warmup-steps') ?? 2);
  // Each record covers the steps since the previous one (log_interval of them, fewer at an epoch's end).
  let prevIter = 0;
  let steps = 0;
  let seconds = 0;
  let dataSeconds = 0;
  const kept = new Set<number>();
  for (const r of records) {
    const iter = Number(r.iteration);
    const n = iter - prevIter;
    if (prevIter >= warmup) {
      steps += n;
      seconds += Number(r.batch_time) * n;
      dataSeconds += Number(r.data_time) * n;
      kept.add(iter);
    }
    prevIter = iter;
  }
  if (steps === 0) throw new Error(`gpus ${gpus}: no training steps after the ${warmup} warm-up steps (raise --train-count)`);

  // train/comm_share at step s covers the same interval as the metrics record of iteration s.
  let commShare: number | null = null;
  if (gpus > 1) {
    let weighted = 0;
    let weight = 0;
    prevIter = 0;
    const shares = new Map<number, number>();
    for (const f of readEventDir(path.join(workDir, 'tb'))) {
      for (const e of f.events) for (const v of e.summary ?? []) if (v.tag === 'train/comm_share' && v.simpleValue !== undefined) shares.set(e.step, v.simpleValue);
    }
    for (const r of records) {
      const iter = Number(r.iteration);
      const share = shares.get(iter);
      if (kept.has(iter) && share !== undefined) {
        const n = iter - prevIter;
        weighted += share * Number(r.batch_time) * n;
        weight += Number(r.batch_time) * n;
      }
      prevIter = iter;
    }
    commShare = weight > 0 ? weighted / weight : null;
  }
  const secondsPerStep = seconds / steps;
  return {
    gpus,
    batchPerTrainer: batch,
    steps,
    secondsPerStep,
    imagesPerS: globalBatch / secondsPerStep,
    dataSecondsPerStep: dataSeconds / steps,
    commShare,
    wallS,
    loadBefore,
    loadAfter: os.loadavg()[0],
  };
}

async function main(): Promise<void> {
  const root = repoRoot();
  const gpusList = (arg('--gpus') ?? '1,2').split(',').map(Number);
  const globalBatch = Number(arg('--global-batch') ?? 8);
  const trainCount = Number(arg('--train-count') ?? 96);
  const epochs = Number(arg('--epochs') ?? 1);
  const repeats = Number(arg('--repeats') ?? 1);
  const backend = arg('--backend');
  const json = process.argv.includes('--json');
  const dd = process.argv.indexOf('--');
  const extra = dd >= 0 ? process.argv.slice(dd + 1) : [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-scaling-'));
  // The default config, shortened: one epoch over `trainCount` synthetic images, a small validation
  // split, a log record every 2 steps (so warm-up steps can be left out), nothing kept.
  const common = [
    `data.root=${path.join(tmp, 'data')}`,
    `data.synth.train_count=${trainCount}`,
    'data.synth.val_count=8',
    `train.epochs=${epochs}`,
    'train.log_interval=2',
    'checkpoint.keep_last=1',
    ...extra,
  ];
  const results: RunResult[] = [];
  try {
    if (!json) {
      console.log(
        `segdist train scaling on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), global batch ${globalBatch}, ` +
          `${trainCount} synthetic images x ${epochs} epoch(s); work in ${tmp}`,
      );
    }
    for (let rep = 0; rep < repeats; rep++) {
      for (const g of gpusList) {
        const r = await runOne(root, tmp, g, globalBatch, common, backend);
        results.push(r);
        if (!json) {
          console.log(
            `  run: --gpus ${g} (batch ${r.batchPerTrainer} each): ${r.secondsPerStep.toFixed(3)} s/step over ${r.steps} steps, ` +
              `${r.imagesPerS.toFixed(2)} images/s` +
              (r.commShare === null ? '' : `, comm ${(r.commShare * 100).toFixed(1)}% of the step`) +
              ` (load ${r.loadBefore.toFixed(1)} -> ${r.loadAfter.toFixed(1)})`,
          );
        }
      }
    }
  } finally {
    if (!process.argv.includes('--keep')) fs.rmSync(tmp, { recursive: true, force: true });
  }
  // Per trainer count, the median run (by images/s) across repeats.
  const best = new Map<number, RunResult>();
  for (const g of gpusList) {
    const rs = results.filter((r) => r.gpus === g).sort((a, b) => a.imagesPerS - b.imagesPerS);
    best.set(g, rs[(rs.length - 1) >> 1]);
  }
  const base = best.get(1);
  const rows = gpusList.map((g) => {
    const r = best.get(g)!;
    const efficiency = base ? r.imagesPerS / (g * base.imagesPerS) : null;
    return { ...r, efficiency, commSecondsPerStep: r.commShare === null ? null : r.commShare * r.secondsPerStep };
  });
  if (json) {
    console.log(JSON.stringify({ runs: results, summary: rows }));
    return;
  }
  console.log('');
  console.log('trainers  batch/trainer   s/step   images/s   scaling eff.   comm share   comm s/step   data s/step   load');
  for (const r of rows) {
    console.log(
      `${String(r.gpus).padStart(8)}  ${String(r.batchPerTrainer).padStart(13)}  ${r.secondsPerStep.toFixed(3).padStart(7)}  ${r.imagesPerS.toFixed(2).padStart(9)}` +
        `  ${r.efficiency === null ? '          -' : ((r.efficiency * 100).toFixed(0) + '%').padStart(13)}` +
        `  ${r.commShare === null ? '          -' : ((r.commShare * 100).toFixed(1) + '%').padStart(11)}` +
        `  ${r.commSecondsPerStep === null ? '           -' : r.commSecondsPerStep.toFixed(3).padStart(12)}` +
        `  ${r.dataSecondsPerStep.toFixed(3).padStart(12)}  ${r.loadBefore.toFixed(1).padStart(5)}`,
    );
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
