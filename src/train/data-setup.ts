// The bridge from the data section of the config to src/data: find (or synthesize) the dataset,
// read its metadata, and build the training and validation loaders for this trainer's shard, fed by
// a pool of data worker threads (data.workers) or, with data.workers 0, by this thread.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SegdistConfig } from '../config/config-types';
import { checkTransforms } from '../data/augment-spec';
import { BatchLoader, type SamplePreparer } from '../data/batch-loader';
import { DataError } from '../data/data-error';
import { DistributedSampler } from '../data/distributed-sampler';
import { readFolderSplit, readListFile, SampleRef } from '../data/folder-dataset';
import { CITYSCAPES_IDS_MAP, cityscapesIdMap, readAde20kSplit, readCityscapesSplit, readVocSplit, reduceZeroLabelMap } from '../data/formats';
import { buildLabelMap, type LoadSampleOptions } from '../data/load-sample';
import { DataPrefetcher, defaultWorkerCount } from '../data/prefetcher';
import { buildPreparer, type PreparerSpec } from '../data/preparer-spec';
import { synthesizeDataset } from '../data/synth-dataset';
import type { CheckpointState } from '../checkpoint/checkpoint-state';
import { vocPalette } from '../eval/palette';

export type DatasetInfo = CheckpointState['dataset'];

export interface PreparedData {
  info: DatasetInfo;
  train: BatchLoader;
  val: BatchLoader;
  trainSize: number;
  valSize: number;
  close(): Promise<void>;
}

export interface ShardSpec {
  rank: number;
  worldSize: number;
  /** Trainers on this host, for the default pool size; default $LOCAL_WORLD_SIZE, else worldSize. */
  trainersOnHost?: number;
}

/** Generates the synthetic dataset when the config asks for it and the root does not exist yet. */
export async function ensureDataset(cfg: SegdistConfig, log: (m: string) => void): Promise<string> {
  const root = path.resolve(cfg.data.root);
  // Only the folder layout can be synthesized; any other format reports the missing root when read.
  if (!fs.existsSync(root) && cfg.data.synthesize && cfg.data.format === 'folder') {
    const s = cfg.data.synth;
    log(`generating the synthetic dataset (${s.classes} classes, ${s.train_count} train + ${s.val_count} val images of ${s.size[0]}x${s.size[1]}) in ${root}`);
    // Written beside the final folder and renamed, so an interrupted generation is never taken as a dataset.
    const tmp = `${root}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    await synthesizeDataset({ out: tmp, classes: s.classes, count: { [cfg.data.train_split]: s.train_count, [cfg.data.val_split]: s.val_count }, size: s.size, seed: s.seed });
    fs.mkdirSync(path.dirname(root), { recursive: true });
    fs.renameSync(tmp, root);
  }
  return root;
}

/** Class names, palette and normalisation: the config wins, then <root>/dataset.json, then defaults. */
export function datasetInfo(cfg: SegdistConfig, root: string): DatasetInfo {
  const metaFile = path.join(root, 'dataset.json');
  let meta: { class_names?: string[]; palette?: number[][] } = {};
  if (fs.existsSync(metaFile)) {
    try {
      meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    } catch (e) {
      throw new DataError(metaFile, `is not valid JSON (${(e as Error).message})`);
    }
  }
  const n = cfg.data.num_classes;
  const names = cfg.data.class_names ?? meta.class_names ?? Array.from({ length: n }, (_, k) => `class${k}`);
  if (names.length !== n) {
    const from = cfg.data.class_names ? 'data.class_names' : metaFile;
    throw new DataError(from, `has ${names.length} class names but data.num_classes is ${n}`);
  }
  const palette = meta.palette && meta.palette.length >= n ? meta.palette.slice(0, n) : vocPalette(n);
  return { num_classes: n, class_names: names, ignore_index: cfg.data.ignore_index, mean: cfg.data.mean, std: cfg.data.std, palette };
}

/**
 * One split in the configured format; `role` says whether it is the training or the validation split.
 * With onMissing, listed samples whose files are missing are reported there and left out.
 */
export async function readSplit(
  cfg: SegdistConfig,
  root: string,
  split: string,
  role: 'train' | 'val' = split === cfg.data.val_split ? 'val' : 'train',
  onMissing?: (e: DataError) => void,
): Promise<SampleRef[]> {
  const d = cfg.data;
  switch (d.format) {
    case 'folder':
      return readFolderSplit({ root, split, onMissing });
    case 'list':
      return readListFile({ root, listFile: d.list[role] ?? `${split}.txt`, onMissing });
    case 'voc':
      return readVocSplit({ root, split, aug: d.voc.aug && role === 'train' ? { excludeSplit: d.val_split } : undefined, onMissing });
    case 'ade20k':
      return readAde20kSplit({ root, split, onMissing });
    case 'cityscapes':
      return readCityscapesSplit({ root, split, gtDir: d.cityscapes.gt_dir, labels: d.cityscapes.labels, onMissing });
  }
}

/** Class count, ignore index and the label lookups of the configured format and data.label_map. */
export function loadOptions(cfg: SegdistConfig, info: DatasetInfo): LoadSampleOptions {
  const ignore = info.ignore_index;
  let map: Uint8Array | undefined;
  if (cfg.data.format === 'ade20k' && cfg.data.ade20k.reduce_zero_label) map = reduceZeroLabelMap(ignore);
  if (cfg.data.label_map) {
    const user = buildLabelMap(Object.entries(cfg.data.label_map).map(([k, v]) => [Number(k), v] as [number, number]));
    map = map === undefined ? user : map.map((v) => user[v]);
  }
  const opts: LoadSampleOptions = { numClasses: info.num_classes, ignoreIndex: ignore, labelMap: map };
  if (cfg.data.format === 'cityscapes') opts.labelMaps = { [CITYSCAPES_IDS_MAP]: cityscapesIdMap(ignore) };
  return opts;
}

/** The train and val preparer specs (plain data, sent as is to worker threads). */
export function preparerSpecs(cfg: SegdistConfig, info: DatasetInfo): { train: PreparerSpec; val: PreparerSpec } {
  const load = loadOptions(cfg, info);
  const context = { mean: cfg.data.mean, std: cfg.data.std, ignoreIndex: info.ignore_index, cropSize: cfg.data.train.crop_size };
  return {
    train: { load, context, transforms: checkTransforms(cfg.data.train.transforms, 'data.train.transforms') },
    val: { load, context, transforms: checkTransforms(cfg.data.val.transforms, 'data.val.transforms', { allowRandom: false, cropSizeDefault: false }) },
  };
}

export async function prepareData(cfg: SegdistConfig, log: (m: string) => void, shard: ShardSpec = { rank: 0, worldSize: 1 }): Promise<PreparedData> {
  const root = await ensureDataset(cfg, log);
  const info = datasetInfo(cfg, root);
  // data.skip_bad: samples whose files are missing from the start are left out (and counted in every
  // epoch's summary line); without it the first one stops the run before it starts.
  const leftOut = { train: 0, val: 0 };
  const onMissing = (role: 'train' | 'val') =>
    cfg.data.skip_bad
      ? (e: DataError) => {
          leftOut[role]++;
          log(`warning: data.skip_bad: leaving out a listed ${role} sample: ${e.message}`);
        }
      : undefined;
  const [trainRefs, valRefs] = await Promise.all([
    readSplit(cfg, root, cfg.data.train_split, 'train', onMissing('train')),
    readSplit(cfg, root, cfg.data.val_split, 'val', onMissing('val')),
  ]);
  for (const [role, refs, split] of [['train', trainRefs, cfg.data.train_split], ['val', valRefs, cfg.data.val_split]] as const) {
    if (refs.length === 0) throw new DataError(root, `split "${split}" has no usable samples: all ${leftOut[role]} listed samples have missing files`);
  }
  const specs = preparerSpecs(cfg, info);
  const { rank, worldSize } = shard;
  const trainersOnHost = shard.trainersOnHost ?? (Number(process.env.LOCAL_WORLD_SIZE) || worldSize);
  const workers = cfg.data.workers ?? defaultWorkerCount(trainersOnHost);
  const pool = workers > 0 ? new DataPrefetcher({ workers, pipelines: { train: specs.train, val: specs.val } }) : null;
  const preparer = (name: 'train' | 'val'): SamplePreparer => (pool ? pool.preparer(name) : buildPreparer(specs[name]));
  const skipLog = (role: 'train' | 'val', split: string) => ({
    onSkip: (e: { epoch: number; error: DataError }) => log(`warning: data.skip_bad: skipping a bad ${split} sample (epoch ${e.epoch + 1}): ${e.error.message}`),
    onEpochEnd: (epoch: number, stats: { skipped: number }) => {
      if (stats.skipped + leftOut[role] > 0) {
        const when = role === 'train' ? `epoch ${epoch + 1}` : 'validation';
        log(`data: ${when}: ${stats.skipped} bad ${split} sample(s) skipped` + (leftOut[role] > 0 ? `, ${leftOut[role]} left out of the list for missing files` : '') + ' (data.skip_bad)');
      }
    },
  });
  let train: BatchLoader;
  let val: BatchLoader;
  try {
    train = new BatchLoader({
      samples: trainRefs,
      sampler: new DistributedSampler({ size: trainRefs.length, rank, worldSize, shuffle: true, seed: cfg.seed }),
      batchSize: cfg.data.train.batch_size,
      seed: cfg.seed,
      prefetch: cfg.data.prefetch,
      prepare: preparer('train'),
      skipBad: cfg.data.skip_bad ? 'replace' : false,
      ...skipLog('train', cfg.data.train_split),
    });
    val = new BatchLoader({
      samples: valRefs,
      // No padding: every validation image is counted exactly once across ranks.
      sampler: new DistributedSampler({ size: valRefs.length, rank, worldSize, shuffle: false, seed: cfg.seed, padding: false }),
      batchSize: cfg.data.val.batch_size,
      seed: cfg.seed,
      prefetch: cfg.data.prefetch,
      dropLast: false,
      prepare: preparer('val'),
      skipBad: cfg.data.skip_bad ? 'drop' : false,
      ...skipLog('val', cfg.data.val_split),
    });
  } catch (e) {
    await pool?.close();
    throw e;
  }
  const threads = workers === 0 ? 'on the main thread' : `${workers} worker thread${workers > 1 ? 's' : ''}${cfg.data.workers === null ? ` (auto: ${trainersOnHost} trainer(s) on this host)` : ''}`;
  log(`data: ${cfg.data.format} dataset at ${root}: ${trainRefs.length} ${cfg.data.train_split} / ${valRefs.length} ${cfg.data.val_split} samples; prepared ${threads}, ${cfg.data.prefetch} batch(es) ahead`);
  return { info, train, val, trainSize: trainRefs.length, valSize: valRefs.length, close: async () => pool?.close() };
}
