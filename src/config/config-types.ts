// The resolved configuration as the code sees it. Kept beside config-schema.ts: the schema checks
// values at run time, these types let the compiler check their uses; a test asserts the two agree.
import type { BACKENDS } from './config-schema';
import type { ModelConfig } from '../models/build-model';

export interface SegdistConfig {
  seed: number;
  work_dir: string;
  backend: (typeof BACKENDS)[number];
  model: ModelConfig;
  data: {
    format: 'folder' | 'list';
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
    prefetch: number;
    train: { batch_size: number; crop_size: [number, number]; scale_range: [number, number]; base_size: number | null; flip: boolean };
    val: { batch_size: number };
  };
  train: { epochs: number; val_interval: number; log_interval: number };
  optimizer: { type: 'sgd'; lr: number; momentum: number; weight_decay: number; nesterov: boolean };
  schedule: { policy: 'poly' | 'constant'; power: number; min_lr: number; warmup_iters: number; warmup_ratio: number };
  checkpoint: { interval: number; keep_last: number; monitor: string | null; early_stop_patience: number; save_on_interrupt: boolean };
}
