// `segdist eval`: a checkpoint, a split, the metrics. The checkpoint carries its resolved config, so
// no config file is needed to evaluate it.
//
// Every image is scored at its original label resolution: the image goes through
// data.val.transforms (resize, normalize), the test-time prediction of test.mode (test-time.ts) is
// resized back to the label's size, and the argmax is counted in a confusion matrix. Metrics come
// from the matrix only, so matrices of disjoint shards add up to the whole split's exactly.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadBackend } from '../backend/load-backend';
import { Communicator } from '../cluster/communicator';
import { readDistEnv } from '../cluster/dist-env';
import { loadCheckpoint } from '../checkpoint/checkpoint-manager';
import { checkConfig, mergeTrees, parseOverrides, resolveConfig } from '../config/load-config';
import type { SegdistConfig } from '../config/config-types';
import { DataError } from '../data/data-error';
import { DistributedSampler } from '../data/distributed-sampler';
import type { SampleRef } from '../data/folder-dataset';
import { loadSample, type LoadedSample } from '../data/load-sample';
import { buildModel } from '../models/build-model';
import { datasetInfo, ensureDataset, loadOptions, readSplit } from '../train/data-setup';
import { formatClassTable } from '../train/progress';
import { loadModelState } from '../train/state-dict';
import type { Segmentor } from '../train/train-step';
import { ConfusionMatrix, countsToDigits, digitsToCounts } from './confusion-matrix';
import type { Progress } from './progress';
import { testImagePreparer, type ImagePreparer, type TestImage } from './test-input';
import { describeTest, predictClasses, testOptions, type TestOptions } from './test-time';

export interface EvalReport {
  checkpoint: string;
  split: string;
  /** Images scored (bad ones skipped under data.skip_bad are not counted). */
  images: number;
  skipped: number;
  /** Processes that evaluated a shard each (segdist eval --gpus N). */
  processes: number;
  mIoU: number;
  mAcc: number;
  aAcc: number;
  /** The test-time settings used (test.* with defaults filled in). */
  test: { mode: string; crop_size: [number, number] | null; stride: [number, number] | null; scales: number[]; flip: boolean };
  backend: string;
  seconds: number;
  classes: Array<{ name: string; iou: number | null; acc: number | null }>;
}

export interface ShardSpec {
  rank: number;
  worldSize: number;
}

export interface ShardInput {
  model: Segmentor;
  /** The whole split, in the same order on every rank. */
  refs: readonly SampleRef[];
  load(ref: SampleRef): Promise<LoadedSample>;
  prepare: ImagePreparer;
  test: TestOptions;
  numClasses: number;
  ignoreIndex: number;
  /** Leave out a sample that fails with a DataError (data.skip_bad) instead of stopping. */
  skipBad?: boolean;
  onImage?(): void;
  onSkip?(error: DataError): void;
}

export interface ShardResult {
  confusion: ConfusionMatrix;
  images: number;
  skipped: number;
}

interface Ready {
  label: Uint8Array;
  height: number;
  width: number;
  input: TestImage;
}

/**
 * Evaluates this rank's shard of the split: samples rank, rank + W, rank + 2W, ... (DistributedSampler
 * without padding, so the shards are disjoint and cover the split). Samples are taken in chunks of
 * test.batchSize, the next chunk decoding while this one is predicted; in whole mode the images of a
 * chunk that share a size go through the model together, exactly the batches training validates with.
 */
export async function evaluateShard(input: ShardInput, shard: ShardSpec): Promise<ShardResult> {
  const { test } = input;
  const confusion = new ConfusionMatrix(input.numClasses);
  if (input.refs.length === 0) return { confusion, images: 0, skipped: 0 };
  const sampler = new DistributedSampler({ size: input.refs.length, rank: shard.rank, worldSize: shard.worldSize, shuffle: false, seed: 0, padding: false });
  const indices = sampler.indices(0);
  const chunk = Math.max(1, test.batchSize);
  const loadOne = async (i: number): Promise<Ready | DataError> => {
    try {
      const s = await input.load(input.refs[i]);
      return { label: s.label, height: s.height, width: s.width, input: input.prepare(s) };
    } catch (e) {
      if (e instanceof DataError && input.skipBad) return e;
      throw e;
    }
  };
  const loadChunk = (k: number) => {
    const p = Promise.all(indices.slice(k * chunk, (k + 1) * chunk).map(loadOne));
    p.catch(() => {}); // rethrown when awaited; not "unhandled" while an earlier chunk is still running
    return p;
  };
  let images = 0;
  let skipped = 0;
  const chunks = Math.ceil(indices.length / chunk);
  let next = loadChunk(0);
  for (let k = 0; k < chunks; k++) {
    const items = await next;
    if (k + 1 < chunks) next = loadChunk(k + 1);
    const good: Ready[] = [];
    for (const item of items) {
      if (item instanceof DataError) {
        skipped++;
        input.onSkip?.(item);
      } else {
        good.push(item);
      }
    }
    // Runs of equal (input size, label size) go through the model together in whole mode; windows and
    // scales are batched inside predictClasses instead.
    for (let a = 0; a < good.length; ) {
      let b = a + 1;
      if (test.mode === 'whole') while (b < good.length && sameShape(good[a], good[b])) b++;
      const run = good.slice(a, b);
      const { height: h, width: w } = run[0].input;
      const x = tf.tensor4d(concat(run.map((r) => r.input.image)), [run.length, h, w, 3]);
      let pred: Int32Array;
      try {
        pred = await predictClasses(input.model, x, run[0].height, run[0].width, test);
      } finally {
        x.dispose();
      }
      const pixels = run[0].height * run[0].width;
      run.forEach((r, i) => {
        confusion.add(pred.subarray(i * pixels, (i + 1) * pixels), r.label, input.ignoreIndex);
        images++;
        input.onImage?.();
      });
      a = b;
    }
  }
  return { confusion, images, skipped };
}

function sameShape(a: Ready, b: Ready): boolean {
  return a.input.height === b.input.height && a.input.width === b.input.width && a.height === b.height && a.width === b.width;
}

function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Sums float32 arrays over all ranks (the cluster communicator's allreduce, sum). */
export type AllreduceSum = (name: string, data: Float32Array) => Promise<Float32Array>;

/**
 * The sum across ranks: every rank passes its shard's result and gets the whole split's. Counts travel
 * as exact float32 digits (confusion-matrix.ts), so the summed matrix, and every metric computed from
 * it, equals the single-process one exactly. Without an allreduce (one process) it is the identity.
 */
export async function sumAcrossRanks(local: ShardResult, allreduceSum?: AllreduceSum): Promise<ShardResult> {
  if (allreduceSum === undefined) return local;
  const counts = new Float64Array(local.confusion.counts.length + 2);
  counts.set(local.confusion.counts);
  counts[counts.length - 2] = local.images;
  counts[counts.length - 1] = local.skipped;
  const summed = digitsToCounts(await allreduceSum('eval/confusion', countsToDigits(counts)));
  const confusion = new ConfusionMatrix(local.confusion.numClasses);
  confusion.merge(summed.subarray(0, confusion.counts.length));
  return { confusion, images: summed[summed.length - 2], skipped: summed[summed.length - 1] };
}

export interface EvalOptions {
  checkpoint: string;
  configFile?: string;
  overrides?: string[];
  /** Lines for people; only rank 0 of a job logs. */
  log: (m: string) => void;
  /** A progress display for `total` images; absent: none. Only rank 0 of a job shows one. */
  progress?: (total: number, label: string) => Progress;
  /**
   * Which shard this process evaluates and how the shards are summed. Default: the job of the
   * launcher's environment (RANK, WORLD_SIZE, ...; `segdist eval --gpus N`), joined over src/cluster's
   * Communicator, or the whole split in a process started alone.
   */
  shard?: ShardSpec;
  /** The cross-rank sum; required with shard.worldSize > 1. */
  allreduceSum?: AllreduceSum;
}

/**
 * Everything that can be wrong with an evaluation's settings, checked without a backend or data:
 * the config (the checkpoint's or --config's, with overrides), the test section and the validation
 * transforms. A launcher calls it before starting processes, so a typo is one config error (exit 2).
 */
export function checkEvalSettings(opts: Pick<EvalOptions, 'checkpoint' | 'configFile' | 'overrides'>): SegdistConfig {
  const ckpt = loadCheckpoint(opts.checkpoint);
  const cfg = evalConfig(opts.checkpoint, ckpt.state.config, opts.configFile, opts.overrides);
  testOptions(cfg);
  testImagePreparer(cfg.data.val.transforms, { mean: cfg.data.mean, std: cfg.data.std, ignoreIndex: cfg.data.ignore_index });
  return cfg;
}

/** The checkpoint's resolved config, or --config's, with the overrides applied. */
export function evalConfig(checkpointDir: string, storedConfig: unknown, configFile?: string, overrides: string[] = []): SegdistConfig {
  return configFile
    ? resolveConfig({ file: configFile, overrides })
    : checkConfig(mergeTrees(storedConfig as Record<string, unknown>, parseOverrides(overrides)), `${path.join(checkpointDir, 'state.json')} config`);
}

export async function evaluateCheckpoint(opts: EvalOptions): Promise<EvalReport> {
  const started = Date.now();
  const ckpt = loadCheckpoint(opts.checkpoint);
  const cfg = evalConfig(opts.checkpoint, ckpt.state.config, opts.configFile, opts.overrides);
  const test = testOptions(cfg);
  // A rank of `segdist eval --gpus N` joins its job here; a process started alone is a job of one.
  const env = opts.shard ? null : readDistEnv();
  const comm = env && env.worldSize > 1 ? await Communicator.connect(env, { timeoutMs: cfg.dist.timeout_s * 1000, dataPlane: cfg.dist.data_plane, nativeRing: cfg.dist.native_ring }) : null;
  try {
    const shard = opts.shard ?? (comm ? { rank: comm.rank, worldSize: comm.worldSize } : { rank: 0, worldSize: 1 });
    const allreduceSum = opts.allreduceSum ?? (comm ? (name: string, data: Float32Array) => comm.allreduce(name, data, 'sum') : undefined);
    if (shard.worldSize > 1 && allreduceSum === undefined) throw new Error('evaluateCheckpoint: a shard of a multi-rank evaluation needs allreduceSum');
    const lead = shard.rank === 0;
    const report = await evaluateWith(opts, ckpt, cfg, test, shard, allreduceSum, lead ? opts.log : () => {}, lead ? opts.progress : undefined, comm, started);
    return report;
  } finally {
    await comm?.close();
  }
}

async function evaluateWith(
  opts: EvalOptions,
  ckpt: ReturnType<typeof loadCheckpoint>,
  cfg: SegdistConfig,
  test: TestOptions,
  shard: ShardSpec,
  allreduceSum: AllreduceSum | undefined,
  log: (m: string) => void,
  progressOf: EvalOptions['progress'],
  comm: Communicator | null,
  started: number,
): Promise<EvalReport> {
  const backend = await loadBackend(cfg.backend, log);
  // Rank 0 generates a missing synthetic dataset while the others wait, so no two processes write it.
  if (comm && shard.rank !== 0) await comm.barrier('eval.data');
  const root = await ensureDataset(cfg, log);
  if (comm && shard.rank === 0) await comm.barrier('eval.data');
  const info = datasetInfo(cfg, root);
  const split = cfg.data.val_split;
  let missing = 0;
  const refs = await readSplit(cfg, root, split, 'val', cfg.data.skip_bad ? (e) => {
    missing++;
    log(`warning: data.skip_bad: leaving out ${e.message}`);
  } : undefined);
  const prepare = testImagePreparer(cfg.data.val.transforms, { mean: cfg.data.mean, std: cfg.data.std, ignoreIndex: info.ignore_index });
  const load = loadOptions(cfg, info);
  const model = buildModel(cfg.model, info.num_classes, cfg.seed);
  const total = new DistributedSampler({ size: Math.max(1, refs.length), ...shard, shuffle: false, seed: 0, padding: false }).numSamples;
  let progress: Progress | undefined;
  try {
    loadModelState(model, ckpt.model, opts.checkpoint);
    const who = shard.worldSize > 1 ? `, ${shard.worldSize} processes` : '';
    log(`evaluating ${opts.checkpoint} on ${refs.length} ${split} images (${describeTest(test)}; backend ${backend}${who})`);
    progress = progressOf?.(total, `eval ${split}${shard.worldSize > 1 ? ` (rank 0 of ${shard.worldSize})` : ''}`);
    const local = await evaluateShard(
      {
        model, refs, test, prepare, numClasses: info.num_classes, ignoreIndex: info.ignore_index, skipBad: cfg.data.skip_bad,
        load: (ref) => loadSample(ref, load),
        onImage: () => progress?.tick(),
        onSkip: (e) => (progress ? progress.note(`warning: data.skip_bad: skipping ${e.message}`) : log(`warning: data.skip_bad: skipping ${e.message}`)),
      },
      shard,
    );
    progress?.stop();
    // ---- The sum across ranks happens here, before any metric is computed. With N processes each
    // evaluates its own shard above and sumAcrossRanks allreduces the counts (exactly); one process
    // passes no allreduce and its shard is the whole split.
    const result = await sumAcrossRanks(local, allreduceSum);
    const metrics = result.confusion.metrics();
    log(formatClassTable(info.class_names, metrics));
    const skipped = result.skipped + missing;
    if (skipped > 0) log(`${skipped} bad ${split} sample(s) skipped (data.skip_bad)`);
    const nan = (x: number) => (Number.isNaN(x) ? null : x);
    return {
      checkpoint: opts.checkpoint, split, images: result.images, skipped, processes: shard.worldSize,
      mIoU: metrics.mIoU, mAcc: metrics.mAcc, aAcc: metrics.aAcc,
      test: {
        mode: test.mode,
        crop_size: test.mode === 'whole' ? null : test.cropSize,
        stride: test.mode === 'whole' ? null : test.stride,
        scales: test.scales,
        flip: test.flip,
      },
      backend, seconds: (Date.now() - started) / 1000,
      classes: info.class_names.map((name, k) => ({ name, iou: nan(metrics.iou[k]), acc: nan(metrics.acc[k]) })),
    };
  } finally {
    progress?.stop();
    model.dispose();
  }
}
