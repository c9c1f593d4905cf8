// Every key segdist understands, with its default and a line of documentation. The README's config
// reference is generated from this tree (`segdist config show --reference`), so it cannot drift.
import { ConfigError } from './config-error';
import { BACKBONE_TYPES, HEAD_TYPES, RESNET_DEPTHS } from '../models/build-model';
import { bool, int, list, num, section, str, SchemaNode } from './schema';

export const BACKENDS = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;

const pair = (def: [number, number] | null, doc: string, opts: { min?: number; integer?: boolean; nullable?: boolean } = {}): SchemaNode =>
  list(def, num(null, '', { min: opts.min, integer: opts.integer }), doc, { minLength: 2, maxLength: 2, nullable: opts.nullable });

function checkLabelMap(value: unknown, at: string): void {
  if (value === null) return;
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${at}: expected a mapping of label values, e.g. {11: 255}, got ${JSON.stringify(value)}`);
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const from = Number(k);
    if (!Number.isInteger(from) || from < 0 || from > 255) throw new ConfigError(`${at}: key ${k} is not a label value 0..255`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255) throw new ConfigError(`${at}.${k}: expected a class index 0..255, got ${JSON.stringify(v)}`);
  }
}

// The defaults are the embedded default job (`segdist train` with no flags): a small PSPNet-ResNet-18
// on a generated synthetic dataset that reaches val mIoU > 0.7 in minutes on a 2-core CPU. The configs
// in configs/ set the standard widths for real datasets.
export const CONFIG_SCHEMA: SchemaNode = section('segdist configuration', {
  seed: int(0, 'Seed of every random draw (init, shuffle, augmentation, dropout).', { min: 0 }),
  work_dir: str('work_dirs/default', 'Where checkpoints, logs and the resolved config go.'),
  backend: str('auto', 'Compute backend: auto takes the first that loads of tensorflow-gpu, tensorflow, wasm, cpu.', { choices: BACKENDS }),
  model: section('The segmentor: backbone + decode head + optional auxiliary head.', {
    norm: str('bn', 'bn, or syncbn to compute batch statistics over all trainers.', { choices: ['bn', 'syncbn'] }),
    align_corners: bool(true, 'Bilinear upsampling with align_corners (PSPNet uses true).'),
    backbone: section('Backbone network.', {
      type: str('resnet', 'Backbone family.', { choices: BACKBONE_TYPES }),
      depth: int(18, 'ResNet depth.', { choices: RESNET_DEPTHS }),
      stem: str('v1b', 'v1b (7x7 conv), v1c (three 3x3 convs) or v1d (v1c + avg-pool shortcut).', { choices: ['v1b', 'v1c', 'v1d'] }),
      output_stride: int(8, 'Output stride: 8 (stages 3-4 dilated 2 and 4) or 16 (stage 4 dilated 2).', { choices: [8, 16] }),
      contract_dilation: bool(true, 'The first block of a dilated stage uses half the dilation (mmseg\'s PSPNet/DeepLab configs, torchvision); false: the full dilation in every block (semseg).'),
      base_channels: int(8, 'Width of the first stage; every stage scales with it. 64 is the standard network; the default 8 trains in minutes on a CPU.', { min: 1 }),
    }),
    head: section('Decode head.', {
      type: str('psp', 'Decode head type.', { choices: HEAD_TYPES }),
      channels: int(32, 'Channels of the head\'s intermediate convolutions (512 with the standard ResNet).', { min: 1 }),
      dropout: num(0.1, 'Channel dropout before the classifier.', { min: 0, max: 0.99 }),
      pool_scales: list([1, 2, 3, 6], int(null, '', { min: 1 }), 'Pyramid pooling bins (PSPNet).', { minLength: 1 }),
    }),
    aux: section('Auxiliary FCN head on stage 3, used only in training.', {
      enabled: bool(true, 'Train with the auxiliary head.'),
      channels: int(16, 'Channels of its 3x3 convolution (256 with the standard ResNet).', { min: 1 }),
      weight: num(0.4, 'Weight of its loss in the total loss.', { min: 0 }),
      dropout: num(0.1, 'Channel dropout before its classifier.', { min: 0, max: 0.99 }),
    }),
  }),
  data: section('Dataset and augmentation.', {
    format: str('folder', 'folder: images/<split>/*, labels/<split>/*.png, <split>.txt of stems; list: <split>.txt lines of "image label" paths.', { choices: ['folder', 'list'] }),
    root: str('work_dirs/default/data', 'Dataset root folder (relative paths resolve from the current directory).'),
    synthesize: bool(true, 'Generate the synthetic dataset into data.root on first use when data.root does not exist.'),
    synth: section('The synthetic dataset generated when data.synthesize is true.', {
      classes: int(5, 'Number of classes (class 0 is background).', { min: 2, max: 255 }),
      train_count: int(320, 'Training images.', { min: 1 }),
      val_count: int(48, 'Validation images.', { min: 1 }),
      size: pair([160, 160], 'Image size [height, width].', { min: 8, integer: true }),
      seed: int(0, 'Generator seed.', { min: 0 }),
    }),
    num_classes: int(5, 'Number of classes the model predicts.', { min: 1, max: 255 }),
    class_names: list(null, str(null, ''), 'Class names for tables and logs (default class0, class1, ...).', { nullable: true }),
    label_map: { kind: 'any', default: null, check: checkLabelMap, doc: 'Stored label value -> class, applied on load, e.g. {11: 255} makes CamVid\'s Unlabelled ignored; null: identity.' },
    ignore_index: int(255, 'Label value excluded from the loss and the metrics.', { min: 0, max: 255 }),
    train_split: str('train', 'Split used for training.'),
    val_split: str('val', 'Split used for validation.'),
    mean: list([123.675, 116.28, 103.53], num(null, ''), 'Per-channel RGB mean subtracted from images (0-255 scale).', { minLength: 3, maxLength: 3 }),
    std: list([58.395, 57.12, 57.375], num(null, '', { min: 1e-6 }), 'Per-channel RGB standard deviation (0-255 scale).', { minLength: 3, maxLength: 3 }),
    prefetch: int(2, 'Batches prepared ahead of the training step.', { min: 1 }),
    train: section('Training-time sampling and augmentation.', {
      batch_size: int(8, 'Images per step per trainer.', { min: 1 }),
      crop_size: pair([128, 128], 'Random crop [height, width].', { min: 1, integer: true }),
      scale_range: pair([0.5, 2.0], 'Random rescale range, relative to the image (or to base_size).', { min: 0.01 }),
      base_size: int(null, 'Long side the random scale is relative to; null keeps the image size.', { min: 1, nullable: true }),
      flip: bool(true, 'Random horizontal flip.'),
    }),
    val: section('Validation.', {
      batch_size: int(8, 'Images per validation batch.', { min: 1 }),
    }),
  }),
  train: section('The training loop.', {
    epochs: int(8, 'Epochs to train.', { min: 1 }),
    val_interval: int(2, 'Validate every this many epochs (and after the last).', { min: 1 }),
    log_interval: int(10, 'Iterations between progress lines.', { min: 1 }),
  }),
  optimizer: section('SGD with momentum.', {
    type: str('sgd', 'Optimizer (sgd).', { choices: ['sgd'] }),
    lr: num(0.05, 'Base learning rate.', { min: 0 }),
    momentum: num(0.9, 'Momentum.', { min: 0, max: 1 }),
    weight_decay: num(1e-4, 'L2 weight decay (not applied to norm and bias parameters).', { min: 0 }),
    nesterov: bool(false, 'Nesterov momentum.'),
  }),
  schedule: section('Learning-rate schedule, a pure function of the iteration.', {
    policy: str('poly', 'poly: lr = base * (1 - t/T)^power, floored at min_lr.', { choices: ['poly', 'constant'] }),
    power: num(0.9, 'Exponent of the poly policy.', { min: 0 }),
    min_lr: num(1e-4, 'Floor of the learning rate.', { min: 0 }),
    warmup_iters: int(20, 'Linear warmup iterations (0: none).', { min: 0 }),
    warmup_ratio: num(0.1, 'Warmup starts at base lr x this ratio.', { min: 0, max: 1 }),
  }),
  checkpoint: section('Checkpoints in <work_dir>/checkpoints.', {
    interval: int(1, 'Save every this many epochs (and after the last).', { min: 1 }),
    keep_last: int(3, 'How many of the most recent checkpoints to keep (0 keeps all).', { min: 0 }),
    monitor: str('max val/mIoU', 'Metric that selects the `best` copy, as "max <metric>" or "min <metric>"; null: no best copy.', { nullable: true }),
    early_stop_patience: int(0, 'Stop after this many validations without improvement of the monitored metric (0: never).', { min: 0 }),
    save_on_interrupt: bool(true, 'On SIGINT/SIGTERM, save a checkpoint of the last completed iteration before exiting.'),
  }),
});
