// The resolved configuration as the code sees it. Kept beside config-schema.ts: the schema checks
// values at run time, these types let the compiler check their uses; a test asserts the two agree.
import type { BACKENDS, TEST_MODES } from './config-schema';
import type { ModelConfig } from '../models/build-model';
import type { CityscapesLabels } from '../data/formats';

/** Keys a config may omit inside list items are optional here; src/train/stage-plan.ts fills them. */
export interface ParamGroupRule {
  pattern: string;
  lr_mult?: number;
  decay_mult?: number;
}

export interface StageConfig {
  name?: string;
  epochs?: number | null;
  iters?: number | null;
  frozen?: string[];
  norm_eval?: boolean;
  lr?: number | null;
  warmup_iters?: number | null;
  param_groups?: ParamGroupRule[] | null;
}

export interface SegdistConfig {
  seed: number;
  work_dir: string;
  backend: (typeof BACKENDS)[number];
  model: ModelConfig;
  data: {
    format: 'folder' | 'list' | 'voc' | 'ade20k' | 'cityscapes';
    root: string;
    synthesize: boolean;
    synth: { classes: number; train_count: number; val_count: number; size: [number, number]; seed: number };
    num_classes: number;
    class_names: string[] | null;
    label_map: Record<string, number> | null;
    ignore_index: number;
    train_split: string;
    val_split: string;
    mean: [number, number, number];
    std: [number, number, number];
    list: { train: string | null; val: string | null };
    voc: { aug: boolean };
    ade20k: { reduce_zero_label: boolean };
    cityscapes: { gt_dir: string; labels: CityscapesLabels };
    workers: number | null;
    prefetch: number;
    skip_bad: boolean;
    /** Transform lists as written in the config; src/data/augment-spec.ts checks them and fills defaults. */
    train: { batch_size: number; crop_size: [number, number]; transforms: Array<Record<string, unknown>> };
    val: { batch_size: number; transforms: Array<Record<string, unknown>> };
  };
  train: { epochs: number; val_interval: number; log_interval: number };
  optimizer: { type: 'sgd'; lr: number; momentum: number; weight_decay: number; nesterov: boolean; param_groups: ParamGroupRule[] };
  schedule: { policy: 'poly' | 'constant'; power: number; min_lr: number; warmup_iters: number; warmup_ratio: number; stages: StageConfig[] | null };
  dist: { timeout_s: number; bucket_mb: number; data_plane: 'stream' | 'zeromq'; native_ring: boolean };
  checkpoint: { interval: number; keep_last: number; monitor: string | null; early_stop_patience: number; save_on_interrupt: boolean };
  test: { mode: (typeof TEST_MODES)[number]; crop_size: [number, number] | null; stride: [number, number] | null; scales: number[]; flip: boolean };
}
