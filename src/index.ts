// The library behind the CLI, for programs that drive segdist from code.
export { resolveConfig, readConfigFile, parseOverrides, configToYaml } from './config/load-config';
export type { SegdistConfig } from './config/config-types';
export { ConfigError } from './config/config-error';
export { loadBackend } from './backend/load-backend';
export { train, TrainingInterrupted } from './train/train-run';
export type { TrainOptions, TrainSummary } from './train/train-run';
export { evaluateCheckpoint } from './eval/eval-run';
export { buildModel } from './models/build-model';
export type { ModelConfig } from './models/build-model';
export { CheckpointManager, loadCheckpoint, findLatestCheckpoint } from './checkpoint/checkpoint-manager';
export { readSafetensors, encodeSafetensors } from './checkpoint/safetensors';
export { synthesizeDataset } from './data/synth-dataset';
export { DataError } from './data/data-error';
export { SummaryWriter } from './tensorboard/summary-writer';
