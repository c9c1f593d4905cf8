// Every key segdist understands, with its default and a line of documentation. The README's config
// reference is generated from this tree (`segdist config show --reference`), so it cannot drift.
import { ConfigError } from './config-error';
import {
  BACKBONE_DEPTHS, BACKBONE_OUT_CHANNELS, BACKBONE_TYPES, HEAD_ATTENTIONS, HEAD_TYPES, PYCONV_GROUPS, PYCONV_HEAD_GROUPS, pyconvHeadGroupsProblem,
} from '../models/build-model';
import { pyconvGroupsProblem } from '../models/pyconv-resnet';
import { bool, int, list, num, section, str, SchemaNode } from './schema';
import { SCHEME_CHOICES } from '../weights/key-schemes';
import { DATA_PLANES } from '../cluster/data-transport';
import { checkTransforms, DEFAULT_TRAIN_TRANSFORMS, DEFAULT_VAL_TRANSFORMS, TRANSFORM_OPS, TransformSpecError } from '../data/augment-spec';

export const DATA_FORMATS = ['folder', 'list', 'voc', 'ade20k', 'cityscapes'] as const;

export const BACKENDS = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;

export const TEST_MODES = ['whole', 'slide', 'multiscale'] as const;

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

const ALL_DEPTHS = [...new Set(Object.values(BACKBONE_DEPTHS).flat())].sort((a, b) => a - b);

/**
 * Rules between model keys, checked once the keys themselves are valid. Runs on each config layer
 * too, where keys may be absent: a rule only applies when its keys are present.
 */
function checkModel(model: Record<string, unknown>, at: string): void {
  const backbone = model.backbone as Record<string, unknown> | undefined;
  if (backbone === undefined) return;
  const type = backbone.type as keyof typeof BACKBONE_DEPTHS | undefined;
  if (type === undefined) return;
  const depths = BACKBONE_DEPTHS[type];
  if (backbone.depth !== undefined && !depths.includes(backbone.depth as number)) {
    throw new ConfigError(`${at}.backbone.depth: ${String(backbone.depth)} is not a depth of ${type}; valid: ${depths.join(', ')}`);
  }
  const head = model.head as Record<string, unknown> | undefined;
  if (head?.type === 'pyconvseg' && head.pyconv_groups !== undefined && head.channels !== undefined &&
      backbone.depth !== undefined && backbone.base_channels !== undefined) {
    const width = BACKBONE_OUT_CHANNELS[type](backbone as { depth: number; base_channels: number });
    const problem = pyconvHeadGroupsProblem(width, head.channels as number, head.pyconv_groups as number[]);
    if (problem !== null) throw new ConfigError(`${at}.head.pyconv_groups: ${problem}`);
  }
  if (type !== 'pyconvresnet') return;
  if (backbone.stem !== undefined && backbone.stem !== 'v1b') {
    throw new ConfigError(`${at}.backbone.stem: pyconvresnet has only its 7x7 stem (v1b), got '${String(backbone.stem)}'`);
  }
  if (backbone.pyconv_groups !== undefined && backbone.base_channels !== undefined) {
    const problem = pyconvGroupsProblem(backbone.base_channels as number, backbone.pyconv_groups as number[][]);
    if (problem !== null) {
      throw new ConfigError(`${at}.backbone.pyconv_groups: ${problem} (model.backbone.base_channels ${String(backbone.base_channels)})`);
    }
  }
}

// The defaults are the embedded default job (`segdist train` with no flags): a small PSPNet-ResNet-18
// on a generated synthetic dataset that reaches val mIoU > 0.7 in minutes on a 2-core CPU. The configs
// in configs/ set the standard widths for real datasets.
/** A transform-list check for the schema: the data module names the item and key, this makes it a ConfigError. */
function transformsCheck(allowRandom: boolean): (value: unknown, at: string) => void {
  return (value, at) => {
    try {
      checkTransforms(value, at, { allowRandom, cropSizeDefault: allowRandom });
    } catch (e) {
      if (e instanceof TransformSpecError) throw new ConfigError(e.message);
      throw e;
    }
  };
}

const TRANSFORM_NAMES = Object.keys(TRANSFORM_OPS).join(', ');

const PARAM_GROUP = section('A parameter group: the first rule whose pattern matches a parameter name sets its multipliers.', {
  pattern: str(null, 'Parameter name pattern: a dotted prefix (backbone, backbone.layer1) or a glob with * (decode_head.*.bn.*).'),
  lr_mult: num(1, 'Multiplies the learning rate.', { min: 0 }),
  decay_mult: num(1, 'Multiplies the weight decay (norm and bias parameters never decay).', { min: 0 }),
});

const STAGE = section('A training stage; stages run in order.', {
  name: str(null, 'Shown in logs and TensorBoard.'),
  epochs: int(null, 'Length in epochs (or give iters; the last stage may omit both to run to train.epochs).', { min: 1, nullable: true }),
  iters: int(null, 'Length in iterations.', { min: 1, nullable: true }),
  frozen: list([], str(null, ''), 'Parameter name patterns that get no gradient, no update and no allreduce in this stage (e.g. [backbone]).'),
  norm_eval: bool(true, 'Batch-norm layers whose parameters are all frozen use their running statistics.'),
  lr: num(null, 'Base learning rate of the stage (null: optimizer.lr).', { min: 0, nullable: true }),
  warmup_iters: int(null, 'Linear warmup at the start of the stage (null: schedule.warmup_iters).', { min: 0, nullable: true }),
  param_groups: list(null, PARAM_GROUP, 'Parameter groups of the stage (null: optimizer.param_groups).', { nullable: true }),
});

export const CONFIG_SCHEMA: SchemaNode = section('segdist configuration', {
  seed: int(0, 'Seed of every random draw (init, shuffle, augmentation, dropout).', { min: 0 }),
  work_dir: str('work_dirs/default', 'Where checkpoints, logs and the resolved config go.'),
  backend: str('auto', 'Compute backend: auto takes the first that loads of tensorflow-gpu, tensorflow, wasm, cpu.', { choices: BACKENDS }),
  model: section('The segmentor: backbone + decode head + optional auxiliary head.', {
    norm: str('bn', 'bn, or syncbn to compute batch statistics over all trainers.', { choices: ['bn', 'syncbn'] }),
    align_corners: bool(true, 'Bilinear upsampling with align_corners (PSPNet uses true).'),
    backbone: section('Backbone network.', {
      type: str('resnet', 'Backbone family.', { choices: BACKBONE_TYPES }),
      depth: int(18, `Depth; resnet: ${BACKBONE_DEPTHS.resnet.join(', ')}; pyconvresnet: ${BACKBONE_DEPTHS.pyconvresnet.join(', ')}.`, { choices: ALL_DEPTHS }),
      stem: str('v1b', 'v1b (7x7 conv), v1c (three 3x3 convs) or v1d (v1c + avg-pool shortcut); pyconvresnet has only v1b.', { choices: ['v1b', 'v1c', 'v1d'] }),
      output_stride: int(8, 'Output stride: 8 (stages 3-4 dilated 2 and 4) or 16 (stage 4 dilated 2).', { choices: [8, 16] }),
      contract_dilation: bool(true, 'The first block of a dilated stage uses half the dilation (mmseg\'s PSPNet/DeepLab configs, torchvision); false: the full dilation in every block (semseg, and iduta\'s PyConvSegNet).'),
      frozen_stages: int(-1, 'Backbone stages that never train, as mmseg\'s frozen_stages: -1 none, 0 the stem, n the stem and stages 1..n (their BNs use running statistics). Applies in every stage of schedule.stages.', { min: -1, max: 4 }),
      norm_eval: bool(false, 'Every backbone batch-norm uses its running statistics while training (mmseg\'s norm_eval; for small batches on pretrained weights).'),
      base_channels: int(8, 'Width of the first stage; every stage scales with it. 64 is the standard network; the default 8 trains in minutes on a CPU.', { min: 1 }),
      stem_channels: int(null, 'Output width of the stem, the input of stage 1 (mmseg\'s stem_channels; the v1c/v1d deep stem is half, half, this). null: base_channels. hszhao/semseg\'s PSPNet ResNets use 128 with base 64.', { min: 2, nullable: true }),
      pyconv_groups: list(PYCONV_GROUPS.map((g) => [...g]), list(null, int(null, '', { min: 1 }), '', { minLength: 1, maxLength: 4 }),
        'pyconvresnet: groups of the pyramid levels (kernels 3, 5, 7, 9) of stages 1-4; each must divide its level\'s channels, so narrow networks need smaller ones.',
        { minLength: 4, maxLength: 4 }),
      multi_grid: list(null, int(null, '', { min: 1 }), 'DeepLab\'s multi-grid: one factor per block of the last stage (e.g. [1, 2, 4] for ResNet-50/101), each block dilated by the stage\'s dilation times its factor; replaces contract_dilation there. null: none.', { nullable: true, minLength: 1 }),
    }),
    head: section('Decode head.', {
      type: str('psp', 'Decode head type: psp (PSPNet), pyconvseg (PyConvSegNet), aspp (DeepLabV3), deeplabv3plus (DeepLabV3+: separable ASPP and a decoder on stage 1).', { choices: HEAD_TYPES }),
      channels: int(32, 'Channels of the head\'s intermediate convolutions (512 with the standard ResNet).', { min: 1 }),
      dropout: num(0.1, 'Channel dropout before the classifier.', { min: 0, max: 0.99 }),
      pool_scales: list([1, 2, 3, 6], int(null, '', { min: 1 }), 'Pyramid pooling bins (PSPNet).', { minLength: 1 }),
      pyconv_groups: list([...PYCONV_HEAD_GROUPS], int(null, '', { min: 1 }),
        'pyconvseg: groups of the head\'s pyramid levels (kernels 3, 5, 7, 9); its branches are 2 x channels wide (iduta: channels 256).',
        { minLength: 4, maxLength: 4 }),
      dilations: list(null, int(null, '', { min: 1 }), 'ASPP branch dilations (aspp, deeplabv3plus): 1 is the 1x1 branch, others 3x3 atrous. null: [1, 12, 24, 36] at output stride 8, [1, 6, 12, 18] at 16.', { nullable: true, minLength: 1 }),
      c1_channels: int(48, 'deeplabv3plus: channels the stage-1 features are reduced to before the decoder fuses them.', { min: 1 }),
      attention: str('none', 'Attention block on the head\'s final features, before dropout and the classifier: none, or dual (DANet\'s position + channel attention, summed).', { choices: HEAD_ATTENTIONS }),
    }),
    aux: section('Auxiliary FCN head on stage 3, used only in training.', {
      enabled: bool(true, 'Train with the auxiliary head.'),
      channels: int(16, 'Channels of its 3x3 convolution (256 with the standard ResNet).', { min: 1 }),
      weight: num(0.4, 'Weight of its loss in the total loss.', { min: 0 }),
      dropout: num(0.1, 'Channel dropout before its classifier.', { min: 0, max: 0.99 }),
    }),
    pretrained: str(null, 'Weights to start training from (a path relative to the current directory): a file written by `segdist weights import`, a checkpoint\'s model.safetensors, or a PyTorch state_dict saved as safetensors (converted on load). Tensors it lacks keep their seeded init; --resume takes precedence. See docs/weights.md.', { nullable: true }),
    pretrained_scheme: str('auto', 'Key scheme of a PyTorch model.pretrained file: auto picks the one under which most tensors match.', { choices: SCHEME_CHOICES }),
    pretrained_strict: bool(false, 'Refuse a model.pretrained file (or `segdist weights import`) unless every tensor matches: no missing, unexpected or shape-mismatched keys.'),
  }, checkModel),
  data: section('Dataset and augmentation.', {
    format: str('folder',
      'Dataset layout. folder: images/<split>/*, labels/<split>/*.png, <split>.txt of stems (CamVid here, `segdist data synth`); ' +
      'list: files of "image label" path pairs (data.list); voc: Pascal VOC 2012 (JPEGImages, SegmentationClass, ImageSets/Segmentation); ' +
      'ade20k: ADEChallengeData2016 (images/, annotations/); cityscapes: leftImg8bit/ + gtFine/. See docs/data.md.', { choices: DATA_FORMATS }),
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
    list: section('data.format list: the list files, one "<image path> <label path>" pair per line, paths relative to data.root.', {
      train: str(null, 'List of the training split; null: <data.root>/<train_split>.txt.', { nullable: true }),
      val: str(null, 'List of the validation split; null: <data.root>/<val_split>.txt.', { nullable: true }),
    }),
    voc: section('data.format voc (data.root: VOC2012, or the VOCdevkit folder holding it).', {
      aug: bool(false, 'Also train on the SBD augmented set: ImageSets/Segmentation/aug.txt with labels in SegmentationClassAug/, minus the ids of the validation split (10582 images with the standard lists).'),
    }),
    ade20k: section('data.format ade20k (data.root: ADEChallengeData2016; splits train/val read images/training, images/validation).', {
      reduce_zero_label: bool(true, 'Label 0 ("other") becomes the ignore index and every other label v becomes v - 1 (150 classes), as mmseg does.'),
    }),
    cityscapes: section('data.format cityscapes (data.root holds leftImg8bit/ and gtFine/).', {
      gt_dir: str('gtFine', 'Annotation folder: gtFine or gtCoarse.'),
      labels: str('auto', 'auto: <name>_labelTrainIds.png when present, else <name>_labelIds.png mapped to the 19 train ids (other ids -> ignore); or force one of labelIds, labelTrainIds.', { choices: ['auto', 'labelIds', 'labelTrainIds'] }),
    }),
    workers: int(null, 'Data worker threads that decode and augment (0: on the main thread). null: the host\'s cores divided by its trainers, minus the compute thread, 1 to 4.', { min: 0, max: 64, nullable: true }),
    prefetch: int(2, 'Batches prepared ahead of the training step.', { min: 1 }),
    skip_bad: bool(false, 'A corrupt, missing, mis-sized or out-of-range sample is skipped with a warning (and counted at the end of the epoch) instead of stopping the run. Training fills its slot with the next good sample of the shard; validation leaves it out.'),
    train: section('Training-time sampling and augmentation.', {
      batch_size: int(8, 'Images per step per trainer.', { min: 1 }),
      crop_size: pair([128, 128], 'Training sample size [height, width]: the size pad and random_crop use when they give none.', { min: 1, integer: true }),
      transforms: {
        kind: 'any',
        default: DEFAULT_TRAIN_TRANSFORMS,
        check: transformsCheck(true),
        doc: `Ordered list of ops, each {type: ..., params}; types: ${TRANSFORM_NAMES}. Every op is deterministic given the seed. Parameters and defaults: docs/data.md.`,
      },
    }),
    val: section('Validation.', {
      batch_size: int(8, 'Images per validation batch.', { min: 1 }),
      transforms: {
        kind: 'any',
        default: DEFAULT_VAL_TRANSFORMS,
        check: transformsCheck(false),
        doc: 'Ordered list of deterministic ops (resize, center_crop, pad, normalize); the default evaluates the whole image.',
      },
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
    param_groups: list([], PARAM_GROUP, 'lr and weight-decay multipliers by parameter name (e.g. [{pattern: backbone, lr_mult: 0.1}]).'),
  }),
  schedule: section('Learning-rate schedule, a pure function of the iteration.', {
    policy: str('poly', 'poly: lr = base * (1 - t/T)^power, floored at min_lr.', { choices: ['poly', 'constant'] }),
    power: num(0.9, 'Exponent of the poly policy.', { min: 0 }),
    min_lr: num(1e-4, 'Floor of the learning rate.', { min: 0 }),
    warmup_iters: int(20, 'Linear warmup iterations (0: none).', { min: 0 }),
    warmup_ratio: num(0.1, 'Warmup starts at base lr x this ratio.', { min: 0, max: 1 }),
    stages: list(null, STAGE, 'Training stages, e.g. the backbone frozen for a first "head" stage, then everything; the lr schedule restarts in each stage (null: one stage).', { nullable: true }),
  }),
  dist: section('Data-parallel training over several trainers (segdist train --gpus N, or a launcher\'s RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT).', {
    timeout_s: num(300, 'Seconds a collective waits for the other trainers before failing with an error that names the ranks that did not arrive.', { min: 1 }),
    bucket_mb: num(25, 'Gradients are fused into buckets of about this many megabytes for the allreduce.', { min: 0.001 }),
    data_plane: str('stream', 'How trainers exchange collective data: stream (plain TCP connections, payloads received straight into shared memory; the faster, docs/benchmarks.md) or zeromq (ZeroMQ sockets). Rendezvous and control always use ZeroMQ. Every trainer of a job must use the same.', { choices: DATA_PLANES }),
    native_ring: bool(true, 'On the stream data plane, run large allreduces in C (built by npm ci where a compiler is; the same messages and results as the JavaScript ring, at less CPU, docs/benchmarks.md). Without the build, or false, they run in JavaScript. Trainers may differ in this.'),
  }),
  checkpoint: section('Checkpoints in <work_dir>/checkpoints.', {
    interval: int(1, 'Save every this many epochs (and after the last).', { min: 1 }),
    keep_last: int(3, 'How many of the most recent checkpoints to keep (0 keeps all).', { min: 0 }),
    monitor: str('max val/mIoU', 'Metric that selects the `best` copy, as "max <metric>" or "min <metric>"; null: no best copy.', { nullable: true }),
    early_stop_patience: int(0, 'Stop after this many validations without improvement of the monitored metric (0: never).', { min: 0 }),
    save_on_interrupt: bool(true, 'On SIGINT/SIGTERM, save a checkpoint of the last completed iteration before exiting.'),
  }),
  test: section('Test-time inference of `segdist eval` and `segdist infer` (validation during training is always whole-image). Images go through data.val.transforms first; predictions are scored at the original label resolution. Details: docs/eval.md.', {
    mode: str('whole', 'whole: one pass over the image; slide: windows of crop_size every stride, logits of overlapping windows averaged; multiscale: the image resized by each of scales (sliding windows where the resized image exceeds crop_size), softmax probabilities resized back and averaged.', { choices: TEST_MODES }),
    crop_size: pair(null, 'Window [height, width] of slide and multiscale; null: data.train.crop_size.', { min: 1, integer: true, nullable: true }),
    stride: pair(null, 'Step between windows [height, width]; null: ceil(2/3 x crop_size), as semseg.', { min: 1, integer: true, nullable: true }),
    scales: list([0.5, 0.75, 1.0, 1.25, 1.5, 1.75], num(null, '', { min: 0.01, max: 16 }), 'Scale factors of multiscale, relative to the image after data.val.transforms.', { minLength: 1 }),
    flip: bool(false, 'Also predict the horizontally flipped image (at every scale) and average the softmax probabilities.'),
  }),
});
