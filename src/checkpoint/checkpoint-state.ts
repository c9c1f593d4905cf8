import type { SegdistConfig } from '../config/config-types';

/** Everything besides tensors that a run needs to continue exactly where it stopped. */
export interface CheckpointState {
  format: 'segdist-checkpoint';
  version: 1;
  /** Completed epochs. */
  epoch: number;
  /** Completed iterations over the whole run (the scheduler and RNG keys are functions of it). */
  iteration: number;
  /** The data position: batches of epoch `epoch` already trained on (0 at an epoch boundary). */
  epoch_iteration: number;
  max_iterations: number;
  /** Base seed; every draw is keyed by (seed, epoch, iteration, sample), so no generator state is needed. */
  seed: number;
  lr: number;
  /** Name of the training stage the next iteration belongs to (informative: the stage is a function of the iteration). */
  stage: string;
  best: { metric: string; mode: 'max' | 'min'; value: number; iteration: number; epoch: number } | null;
  /** Validations in a row without improvement of the monitored metric (early stopping). */
  stale_validations: number;
  world_size: number;
  /** What inference needs without a config file. */
  dataset: { num_classes: number; class_names: string[]; ignore_index: number; mean: number[]; std: number[]; palette: number[][] };
  config: SegdistConfig;
  saved_at: string;
}
