// `segdist eval`: a checkpoint, a split, the metrics. The checkpoint carries its resolved config, so
// no config file is needed to evaluate it.
import * as path from 'node:path';
import { loadBackend } from '../backend/load-backend';
import { loadCheckpoint } from '../checkpoint/checkpoint-manager';
import { checkConfig, mergeTrees, parseOverrides, resolveConfig } from '../config/load-config';
import { buildModel } from '../models/build-model';
import { prepareData } from '../train/data-setup';
import { formatClassTable } from '../train/progress';
import { loadModelState } from '../train/state-dict';
import { evaluate } from './evaluate';

export interface EvalReport {
  checkpoint: string;
  split: string;
  images: number;
  mIoU: number;
  mAcc: number;
  aAcc: number;
  loss: number;
  classes: Array<{ name: string; iou: number | null; acc: number | null }>;
}

export async function evaluateCheckpoint(opts: { checkpoint: string; configFile?: string; overrides?: string[]; log: (m: string) => void }): Promise<EvalReport> {
  const ckpt = loadCheckpoint(opts.checkpoint);
  const cfg = opts.configFile
    ? resolveConfig({ file: opts.configFile, overrides: opts.overrides })
    : checkConfig(mergeTrees(ckpt.state.config as unknown as Record<string, unknown>, parseOverrides(opts.overrides ?? [])), `${path.join(opts.checkpoint, 'state.json')} config`);
  const backend = await loadBackend(cfg.backend, opts.log);
  const data = await prepareData(cfg, opts.log);
  const model = buildModel(cfg.model, data.info.num_classes, cfg.seed);
  try {
    loadModelState(model, ckpt.model, opts.checkpoint);
    opts.log(`evaluating ${opts.checkpoint} on ${data.valSize} ${cfg.data.val_split} images (backend ${backend})`);
    const r = await evaluate(model, data.val.batches(0), { numClasses: data.info.num_classes, ignoreIndex: data.info.ignore_index });
    opts.log(formatClassTable(data.info.class_names, r.metrics));
    const nan = (x: number) => (Number.isNaN(x) ? null : x);
    return {
      checkpoint: opts.checkpoint, split: cfg.data.val_split, images: r.images, mIoU: r.metrics.mIoU, mAcc: r.metrics.mAcc, aAcc: r.metrics.aAcc, loss: r.loss,
      classes: data.info.class_names.map((name, k) => ({ name, iou: nan(r.metrics.iou[k]), acc: nan(r.metrics.acc[k]) })),
    };
  } finally {
    model.dispose();
    await data.close();
  }
}
