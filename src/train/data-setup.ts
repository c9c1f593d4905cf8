// The bridge from the data section of the config to src/data: find (or synthesize) the dataset,
// read its metadata, and build the training and validation loaders for this trainer's shard.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SegdistConfig } from '../config/config-types';
import { BatchLoader } from '../data/batch-loader';
import { DataError } from '../data/data-error';
import { DistributedSampler } from '../data/distributed-sampler';
import { readFolderSplit, readListFile, SampleRef } from '../data/folder-dataset';
import { buildLabelMap, loadSample } from '../data/load-sample';
import { synthesizeDataset } from '../data/synth-dataset';
import { evalTransform, trainTransform } from '../data/transforms';
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
}

/** Generates the synthetic dataset when the config asks for it and the root does not exist yet. */
export async function ensureDataset(cfg: SegdistConfig, log: (m: string) => void): Promise<string> {
  const root = path.resolve(cfg.data.root);
  if (!fs.existsSync(root) && cfg.data.synthesize) {
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

export async function readSplit(cfg: SegdistConfig, root: string, split: string): Promise<SampleRef[]> {
  return cfg.data.format === 'list' ? readListFile({ root, listFile: `${split}.txt` }) : readFolderSplit({ root, split });
}

export async function prepareData(cfg: SegdistConfig, log: (m: string) => void, shard: ShardSpec = { rank: 0, worldSize: 1 }): Promise<PreparedData> {
  const root = await ensureDataset(cfg, log);
  const info = datasetInfo(cfg, root);
  const [trainRefs, valRefs] = await Promise.all([readSplit(cfg, root, cfg.data.train_split), readSplit(cfg, root, cfg.data.val_split)]);
  const labelMap = cfg.data.label_map ? buildLabelMap(Object.entries(cfg.data.label_map).map(([k, v]) => [Number(k), v] as [number, number])) : undefined;
  const load = (ref: SampleRef) => loadSample(ref, { numClasses: info.num_classes, ignoreIndex: info.ignore_index, labelMap });
  const t = cfg.data.train;
  const train = new BatchLoader({
    samples: trainRefs,
    sampler: new DistributedSampler({ size: trainRefs.length, ...shard, shuffle: true, seed: cfg.seed }),
    batchSize: t.batch_size,
    seed: cfg.seed,
    prefetch: cfg.data.prefetch,
    load,
    transform: trainTransform({
      cropSize: t.crop_size, scaleRange: t.scale_range, baseSize: t.base_size ? [t.base_size, t.base_size] : undefined,
      flipProb: t.flip ? 0.5 : 0, ignoreIndex: info.ignore_index, mean: cfg.data.mean, std: cfg.data.std,
    }),
  });
  const val = new BatchLoader({
    samples: valRefs,
    // No padding: every validation image is counted exactly once across ranks.
    sampler: new DistributedSampler({ size: valRefs.length, ...shard, shuffle: false, seed: cfg.seed, padding: false }),
    batchSize: cfg.data.val.batch_size,
    seed: cfg.seed,
    prefetch: cfg.data.prefetch,
    dropLast: false,
    load,
    transform: evalTransform({ mean: cfg.data.mean, std: cfg.data.std }),
  });
  return { info, train, val, trainSize: trainRefs.length, valSize: valRefs.length, close: async () => {} };
}
