// npm run bench:data — the data pipeline on real CamVid frames (480x360 JPEG + PNG) with the PSPNet
// training transforms at 256x256 crops:
//   1. samples/s of the DataPrefetcher pool with 1 and 2 threads (and on the main thread), beside the
//      same transforms in OpenCV-python (tools/opencv/bench_augment.py, one process, one cv2 thread)
//      run in the same benchmark, interleaved, median of --repeats rounds; CPU seconds per sample
//      (every thread of the process, libvips and libuv ones included) for both;
//   2. a short training run (PSPNet-ResNet-18 at half width, batch 8) with the pool and without it:
//      the data wait as a share of step time, from the run's own metrics.
// Not a test: numbers depend on the machine and on what else runs on it. Results also go to
// .bench/data.json.
//
//   node dist/bench/data.js [--root ../shared/datasets/camvid] [--frames 120] [--repeats 3]
//                           [--train-steps 8] [--skip-train] [--skip-opencv] [--python /usr/bin/python3]

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { resolveConfig } from '../src/config/load-config';
import { checkTransforms } from '../src/data/augment-spec';
import type { SampleJob, SamplePreparer } from '../src/data/batch-loader';
import { readFolderSplit, type SampleRef } from '../src/data/folder-dataset';
import { buildLabelMap } from '../src/data/load-sample';
import { DataPrefetcher } from '../src/data/prefetcher';
import { buildPreparer, type PreparerSpec } from '../src/data/preparer-spec';
import { SilentRunLogger } from '../src/train/run-logger';
import { train } from '../src/train/train-run';
import { PSPNET_TRANSFORMS } from './data-presets';
import { NullSummaryWriter } from '../src/tensorboard/summary-writer';

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');

const MEAN: [number, number, number] = [123.675, 116.28, 103.53];
const STD: [number, number, number] = [58.395, 57.12, 57.375];

interface Throughput {
  samplesPerS: number;
  /** Every thread of the process (or the Python process). */
  cpuSPerSample: number;
  /** The pool's worker threads only: decoding and augmenting minus what libvips/libuv threads do. */
  threadCpuSPerSample?: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function cpuSeconds(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1e6;
}

async function timeJobs(prepare: SamplePreparer, jobs: SampleJob[], concurrency: number): Promise<Throughput> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < jobs.length) await prepare(jobs[next++]);
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(process.cpuUsage(cpu0));
  return { samplesPerS: jobs.length / wall, cpuSPerSample: cpu / jobs.length };
}

async function poolThroughput(workers: number, spec: PreparerSpec, jobs: SampleJob[]): Promise<Throughput> {
  const pool = new DataPrefetcher({ workers, pipelines: { train: spec } });
  try {
    const prepare = pool.preparer('train');
    await Promise.all(jobs.slice(0, 3 * workers).map((j) => prepare(j))); // start-up and warm-up
    const before = await pool.threadCpuSeconds();
    // Everything at once, as BatchLoader hands over K batches: the pool keeps every thread busy.
    const t = await timeJobs(prepare, jobs, jobs.length);
    const after = await pool.threadCpuSeconds();
    if (before.every((x) => x !== null)) {
      t.threadCpuSPerSample = after.reduce<number>((sum, x, i) => sum + (x! - before[i]!), 0) / jobs.length;
    }
    return t;
  } finally {
    await pool.close();
  }
}

async function opencvThroughput(python: string, pairsFile: string): Promise<Throughput & { version: string }> {
  const { stdout } = await run(python, [path.join(REPO, 'tools', 'opencv', 'bench_augment.py'), '--pairs', pairsFile, '--crop', '256', '256'], { maxBuffer: 1 << 20 });
  const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { samples_per_s: number; cpu_s_per_sample: number; opencv: string };
  return { samplesPerS: r.samples_per_s, cpuSPerSample: r.cpu_s_per_sample, version: r.opencv };
}

/** Records the train metrics lines of a run. */
class MetricsLogger extends SilentRunLogger {
  readonly records: Array<Record<string, unknown>> = [];
  readonly lines: string[] = [];
  override metrics(r?: Record<string, unknown>): void {
    if (r) this.records.push(r);
  }
  override info(m?: string): void {
    if (m) this.lines.push(m);
  }
}

interface TrainingWait {
  workers: number;
  steps: number;
  stepS: number;
  dataWaitS: number;
  share: number;
  firstStepDataWaitS: number;
}

/** A short training run on `steps` batches of CamVid; data wait per step over step time, first step apart. */
async function trainingWait(root: string, stems: string[], valStem: string, workers: number, steps: number, batch: number): Promise<TrainingWait> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-bench-data-'));
  try {
    const data = path.join(tmp, 'camvid');
    fs.mkdirSync(data);
    fs.symlinkSync(path.join(root, 'images'), path.join(data, 'images'));
    fs.symlinkSync(path.join(root, 'labels'), path.join(data, 'labels'));
    fs.writeFileSync(path.join(data, 'train.txt'), stems.slice(0, (steps + 1) * batch).join('\n') + '\n');
    fs.writeFileSync(path.join(data, 'val.txt'), valStem + '\n');
    const cfg = resolveConfig({
      overrides: [
        `work_dir=${path.join(tmp, 'work')}`, `data.root=${data}`, 'data.synthesize=false', 'data.num_classes=11', 'data.label_map={11: 255}',
        'data.train.crop_size=[256,256]', `data.train.batch_size=${batch}`, 'data.val.batch_size=1', `data.workers=${workers}`,
        `data.train.transforms=${JSON.stringify(PSPNET_TRANSFORMS)}`,
        'model.backbone.depth=18', 'model.backbone.base_channels=32', 'model.head.channels=128', 'model.aux.channels=64',
        'train.epochs=1', 'train.log_interval=1', 'train.val_interval=1', 'checkpoint.keep_last=1', 'checkpoint.monitor=null',
      ],
    });
    const logger = new MetricsLogger();
    await train(cfg, { logger, summaryWriter: new NullSummaryWriter() });
    const rec = logger.records.filter((r) => r.kind === 'train') as Array<{ batch_time: number; data_time: number }>;
    const steady = rec.slice(1);
    const stepS = steady.reduce((a, r) => a + r.batch_time, 0) / steady.length;
    const waitS = steady.reduce((a, r) => a + r.data_time, 0) / steady.length;
    return { workers, steps: steady.length, stepS, dataWaitS: waitS, share: waitS / stepS, firstStepDataWaitS: rec[0]?.data_time ?? NaN };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      root: { type: 'string', default: path.resolve(REPO, '..', 'shared', 'datasets', 'camvid') },
      frames: { type: 'string', default: '120' },
      repeats: { type: 'string', default: '3' },
      'train-steps': { type: 'string', default: '8' },
      'train-batch': { type: 'string', default: '8' },
      'skip-train': { type: 'boolean', default: false },
      'skip-opencv': { type: 'boolean', default: false },
      python: { type: 'string', default: '/usr/bin/python3' },
    },
  });
  const root = path.resolve(values.root!);
  const refs: SampleRef[] = (await readFolderSplit({ root, split: 'train' })).slice(0, Number(values.frames));
  const spec: PreparerSpec = {
    load: { numClasses: 11, ignoreIndex: 255, labelMap: buildLabelMap({ 11: 255 }) },
    context: { mean: MEAN, std: STD, ignoreIndex: 255, cropSize: [256, 256] },
    transforms: checkTransforms(PSPNET_TRANSFORMS, 'PSPNET_TRANSFORMS'),
  };
  const jobs: SampleJob[] = refs.map((ref, position) => ({ ref, epoch: 0, position, seed: 0 }));
  const pairs = path.join(os.tmpdir(), `segdist-bench-pairs-${process.pid}.txt`);
  fs.writeFileSync(pairs, refs.map((r) => `${r.image} ${r.label}`).join('\n') + '\n');

  console.log(`data pipeline benchmark: ${refs.length} CamVid frames from ${root}, PSPNet transforms, 256x256 crops; ${os.availableParallelism()} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const rounds: Record<string, Throughput[]> = { main: [], pool1: [], pool2: [], opencv: [] };
  let opencvVersion = '';
  const local = buildPreparer(spec);
  await timeJobs(local, jobs.slice(0, 4), 1);
  for (let r = 0; r < Number(values.repeats); r++) {
    if (!values['skip-opencv']) {
      const o = await opencvThroughput(values.python!, pairs);
      opencvVersion = o.version;
      rounds.opencv.push(o);
    }
    rounds.pool1.push(await poolThroughput(1, spec, jobs));
    rounds.pool2.push(await poolThroughput(2, spec, jobs));
    rounds.main.push(await timeJobs(local, jobs, 2));
    console.log(`round ${r + 1}: ` + Object.entries(rounds).filter(([, v]) => v.length > r).map(([k, v]) => `${k} ${v[r].samplesPerS.toFixed(1)}/s`).join(', '));
  }
  fs.rmSync(pairs, { force: true });
  const summary = Object.fromEntries(
    Object.entries(rounds).filter(([, v]) => v.length > 0).map(([k, v]) => {
      const thread = v.map((x) => x.threadCpuSPerSample).filter((x): x is number => x !== undefined);
      return [k, { samplesPerS: median(v.map((x) => x.samplesPerS)), cpuMsPerSample: 1000 * median(v.map((x) => x.cpuSPerSample)), threadCpuMsPerSample: thread.length ? 1000 * median(thread) : null }];
    }),
  );
  const label: Record<string, string> = {
    pool1: 'segdist pool, 1 worker thread',
    pool2: 'segdist pool, 2 worker threads',
    main: 'segdist on the main thread (data.workers 0)',
    opencv: `OpenCV-python ${opencvVersion}, 1 process, 1 cv2 thread`,
  };
  console.log('\n| pipeline | samples/s (median) | CPU ms per sample, all threads | CPU ms per sample, pool threads |\n| --- | --- | --- | --- |');
  for (const [k, v] of Object.entries(summary)) {
    console.log(`| ${label[k]} | ${v.samplesPerS.toFixed(1)} | ${v.cpuMsPerSample.toFixed(1)} | ${v.threadCpuMsPerSample === null ? '' : v.threadCpuMsPerSample.toFixed(1)} |`);
  }
  if (summary.opencv) {
    const o = summary.opencv;
    const p1 = summary.pool1;
    console.log(`\n1-thread pool vs one OpenCV process: ${(p1.samplesPerS / o.samplesPerS).toFixed(2)}x samples/s; ` +
      `${(o.cpuMsPerSample / p1.cpuMsPerSample).toFixed(2)}x samples per CPU second (all threads)` +
      (p1.threadCpuMsPerSample ? `; ${(o.cpuMsPerSample / p1.threadCpuMsPerSample).toFixed(2)}x samples per CPU second of the pool thread` : ''));
  }

  const waits: TrainingWait[] = [];
  if (!values['skip-train']) {
    const stems = (await readFolderSplit({ root, split: 'train' })).map((r) => r.id);
    const valStem = (await readFolderSplit({ root, split: 'val' }))[0].id;
    for (const workers of [1, 0]) {
      const w = await trainingWait(root, stems, valStem, workers, Number(values['train-steps']), Number(values['train-batch']));
      waits.push(w);
      console.log(`training, data.workers ${workers}: step ${w.stepS.toFixed(2)} s, data wait ${(1000 * w.dataWaitS).toFixed(1)} ms per step = ${(100 * w.share).toFixed(2)}% of step time (mean of ${w.steps} steps after the first; first step waited ${w.firstStepDataWaitS.toFixed(2)} s)`);
    }
  }
  fs.mkdirSync(path.join(REPO, '.bench'), { recursive: true });
  fs.writeFileSync(path.join(REPO, '.bench', 'data.json'), JSON.stringify({ date: new Date().toISOString(), cores: os.availableParallelism(), loadavg: os.loadavg(), frames: refs.length, summary, rounds, training: waits }, null, 2) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
