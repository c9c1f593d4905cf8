// Images/s of `segdist eval` in whole, slide and multi-scale + flip modes on CamVid val (480x360) on the
// wasm backend, beside the same evaluation in PyTorch (tools/bench_eval.py, Debian's python3-torch) for
// the same model and the same weights, in the same run.
//
//   npx tsc -p . && node dist/bench/eval.js [--root ../shared/datasets/camvid] [--checkpoint DIR]
//       [--images 24] [--ms-images 3] [--modes whole,slide,msflip] [--torch-threads 1] [--no-torch]
//       [--calibrate 12]
//
// The model is configs/pspnet_r18_camvid.yaml's (PSPNet-ResNet-18 V1b, output stride 8, width 32,
// head 128; 11 classes), with random weights (BN statistics calibrated on --calibrate CamVid crops)
// unless --checkpoint gives trained ones: throughput does not depend on the weights, and both
// frameworks get the same ones, so their mIoU should agree (a parity check of the test-time code,
// not a quality number). The test settings are that config's
// eval defaults: slide windows of the training crop (192x192, stride 128), multi-scale over
// [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] with those windows, plus flip; windows go 4 to a forward pass.
//
// The timed loop is the evaluation itself (decode, normalise, predict, argmax, confusion matrix) over
// the first N images of the split, not the model build. Wall time and this process's CPU time are
// both reported: wasm runs on one thread and --torch-threads (default 1) sets PyTorch's, so on a shared
// machine the CPU time per image is the steadier comparison. Each mode runs segdist first, then
// PyTorch, so both see about the same neighbours.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { loadBackend } from '../src/backend/load-backend';
import { loadCheckpoint } from '../src/checkpoint/checkpoint-manager';
import { encodeSafetensors } from '../src/checkpoint/safetensors';
import { resolveConfig } from '../src/config/load-config';
import type { SegdistConfig } from '../src/config/config-types';
import { loadSample } from '../src/data/load-sample';
import { evalConfig, evaluateShard } from '../src/eval/eval-run';
import { testImagePreparer } from '../src/eval/test-input';
import { describeTest, testOptions, type TestOptions } from '../src/eval/test-time';
import { buildModel } from '../src/models/build-model';
import { datasetInfo, loadOptions, readSplit } from '../src/train/data-setup';
import { loadModelState, modelStateDict } from '../src/train/state-dict';

const REPO = path.resolve(__dirname, '../..');
const argv = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const flag = (name: string) => argv.includes(`--${name}`);

// configs/pspnet_r18_camvid.yaml (extends pspnet_r50_camvid.yaml), spelled out as overrides.
const CAMVID_R18 = [
  'data.format=folder', 'data.synthesize=false', 'data.num_classes=11', 'data.label_map={11: 255}',
  'data.class_names=[Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist]',
  'data.train.crop_size=[192,192]', 'data.val.batch_size=4',
  'model.backbone.depth=18', 'model.backbone.stem=v1b', 'model.backbone.output_stride=8', 'model.backbone.base_channels=32',
  'model.head.channels=128', 'model.aux.channels=64',
];

interface ModeSpec {
  name: string;
  overrides: string[];
  images: number;
}

interface Measured {
  images: number;
  wall_s: number;
  cpu_s: number;
  mIoU: number;
  aAcc: number;
  /** Labelled pixels predicted as each class (confusion matrix column sums). */
  predicted: number[];
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function pythonSpecTest(t: TestOptions): Record<string, unknown> {
  return { mode: t.mode, crop_size: t.cropSize, stride: t.stride, scales: t.scales, flip: t.flip, batch_size: t.batchSize };
}

async function main(): Promise<void> {
  const root = path.resolve(opt('root', path.join(REPO, '..', 'shared', 'datasets', 'camvid')));
  const checkpoint = opt('checkpoint', '');
  const nImages = opt('images', '24');
  const nMs = opt('ms-images', '3');
  const torchThreads = opt('torch-threads', '1');
  const wanted = opt('modes', 'whole,slide,msflip').split(',');
  const configWith = (extra: string[]): SegdistConfig =>
    checkpoint
      ? evalConfig(checkpoint, loadCheckpoint(checkpoint).state.config, undefined, [`data.root=${root}`, 'backend=wasm', ...extra])
      : resolveConfig({ overrides: [...CAMVID_R18, `data.root=${root}`, 'backend=wasm', ...extra] });
  const base = configWith([]);
  const backend = await loadBackend('wasm', () => {});
  const info = datasetInfo(base, root);
  const refs = await readSplit(base, root, base.data.val_split, 'val');
  const count = (n: string) => (n === 'all' ? refs.length : Math.min(refs.length, Number(n)));
  const modes: ModeSpec[] = [
    { name: 'whole', overrides: ['test.mode=whole', 'test.flip=false'], images: count(nImages) },
    { name: 'slide', overrides: ['test.mode=slide', 'test.flip=false'], images: count(nImages) },
    { name: 'msflip', overrides: ['test.mode=multiscale', 'test.flip=true'], images: count(nMs) },
  ].filter((m) => wanted.includes(m.name));

  const model = buildModel(base.model, info.num_classes, base.seed);
  if (checkpoint) {
    loadModelState(model, loadCheckpoint(checkpoint).model, checkpoint);
  } else {
    // Random weights with BN statistics of real images (training-mode forwards update the running
    // statistics): the predictions then vary across classes, so the two frameworks' mIoU compare
    // something. Without it a random network predicts one class everywhere.
    const steps = Number(opt('calibrate', '12'));
    const calibLoad = loadOptions(base, info);
    const calibPrepare = testImagePreparer(base.data.val.transforms, { mean: base.data.mean, std: base.data.std, ignoreIndex: info.ignore_index });
    for (let i = 0; i < steps; i++) {
      const img = calibPrepare(await loadSample(refs[(i * 7) % refs.length], calibLoad));
      const [ch, cw] = [Math.min(192, img.height), Math.min(192, img.width)];
      tf.tidy(() => {
        const full = tf.tensor4d(img.image, [1, img.height, img.width, 3]);
        // Two crops: BN on the 1x1 pyramid bin needs more than one value per channel.
        const crop = (k: number) => tf.slice(full, [0, (k * 53) % (img.height - ch + 1), (k * 97) % (img.width - cw + 1), 0], [1, ch, cw, 3]);
        model.forward(tf.concat([crop(2 * i), crop(2 * i + 1)], 0), { training: true, seed: i });
      });
    }
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-bench-eval-'));
  const weights = path.join(tmp, 'model.safetensors');
  fs.writeFileSync(weights, encodeSafetensors(modelStateDict(model)));
  const load = loadOptions(base, info);
  const prepare = testImagePreparer(base.data.val.transforms, { mean: base.data.mean, std: base.data.std, ignoreIndex: info.ignore_index });

  const spec = {
    model: base.model, num_classes: info.num_classes, weights, mean: base.data.mean, std: base.data.std,
    ignore_index: info.ignore_index, label_map: base.data.label_map ?? {},
    modes: {} as Record<string, unknown>,
  };
  const tests = new Map<string, TestOptions>();
  for (const m of modes) {
    const t = testOptions(configWith(m.overrides));
    tests.set(m.name, t);
    spec.modes[m.name] = { test: pythonSpecTest(t), samples: refs.slice(0, m.images).map((r) => [r.image, r.label]) };
  }
  const specFile = path.join(tmp, 'spec.json');
  fs.writeFileSync(specFile, JSON.stringify(spec));

  console.log(`CamVid val at ${root}: ${refs.length} images; model PSPNet-R${base.model.backbone.depth} width ${base.model.backbone.base_channels}, head ${base.model.head.channels}, ${checkpoint ? `weights of ${checkpoint}` : 'random weights'}`);
  console.log(`segdist on ${backend} (tfjs ${tf.version.tfjs}); PyTorch ${flag('no-torch') ? 'skipped' : `with ${torchThreads} thread(s)`}; ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const mismatch = new Map<string, number>();
  const rows: Array<{ mode: string; test: string; ours: Measured; torch?: Measured & { torch?: string } }> = [];
  for (const m of modes) {
    const test = tests.get(m.name)!;
    // Warm-up: one image, so kernel set-up and the first allocation of each shape are not timed.
    await evaluateShard({ model, refs: refs.slice(0, 1), load: (r) => loadSample(r, load), prepare, test, numClasses: info.num_classes, ignoreIndex: info.ignore_index }, { rank: 0, worldSize: 1 });
    const wall0 = Date.now();
    const cpu0 = cpuSeconds();
    const r = await evaluateShard(
      { model, refs: refs.slice(0, m.images), load: (ref) => loadSample(ref, load), prepare, test, numClasses: info.num_classes, ignoreIndex: info.ignore_index },
      { rank: 0, worldSize: 1 },
    );
    const k = info.num_classes;
    const predicted = Array.from({ length: k }, (_, c) => {
      let n = 0;
      for (let g = 0; g < k; g++) n += r.confusion.counts[g * k + c];
      return n;
    });
    const ours: Measured = { images: r.images, wall_s: (Date.now() - wall0) / 1000, cpu_s: cpuSeconds() - cpu0, mIoU: r.confusion.metrics().mIoU, aAcc: r.confusion.metrics().aAcc, predicted };
    let torch: (Measured & { torch?: string }) | undefined;
    if (!flag('no-torch')) {
      const p = spawnSync('/usr/bin/python3', [path.join(REPO, 'tools', 'bench_eval.py'), '--spec', specFile, '--mode', m.name, '--threads', torchThreads], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (p.status !== 0) throw new Error(`tools/bench_eval.py --mode ${m.name} failed (${p.status}):\n${p.stderr}`);
      torch = JSON.parse(p.stdout.trim().split('\n').pop()!);
    }
    rows.push({ mode: m.name, test: describeTest(test), ours, torch });
    const line = (who: string, x: Measured) =>
      `  ${who.padEnd(16)} ${String(x.images).padStart(3)} images  ${(x.images / x.wall_s).toFixed(3).padStart(7)} img/s wall  ${(x.cpu_s / x.images).toFixed(2).padStart(7)} cpu-s/img  mIoU ${(100 * x.mIoU).toFixed(2)}% aAcc ${(100 * x.aAcc).toFixed(2)}%`;
    console.log(`${m.name}: ${describeTest(test)}`);
    console.log(line('segdist wasm', ours));
    if (torch) {
      console.log(line(`PyTorch ${torch.torch ?? ''}`, torch));
      // Parity: how many labelled pixels the two predict differently, as far as per-class counts can tell.
      const off = ours.predicted.reduce((n, v, c) => n + Math.abs(v - torch!.predicted[c]), 0) / 2;
      const total = ours.predicted.reduce((a, b) => a + b, 0);
      console.log(`  predicted pixels per class, segdist: [${ours.predicted.join(', ')}]`);
      console.log(`  per-class prediction counts differ on ${off} of ${total} labelled pixels (${((100 * off) / total).toFixed(4)}%)`);
      mismatch.set(m.name, off / total);
    }
  }

  console.log('\n| mode | images | segdist wasm img/s | PyTorch img/s | segdist cpu-s/img | PyTorch cpu-s/img | cpu ratio | mIoU segdist / PyTorch | class-count mismatch |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const { mode, ours, torch } of rows) {
    const t = torch;
    console.log(
      `| ${mode} | ${ours.images} | ${(ours.images / ours.wall_s).toFixed(3)} | ${t ? (t.images / t.wall_s).toFixed(3) : '-'} | ` +
        `${(ours.cpu_s / ours.images).toFixed(2)} | ${t ? (t.cpu_s / t.images).toFixed(2) : '-'} | ${t ? (ours.cpu_s / ours.images / (t.cpu_s / t.images)).toFixed(1) + 'x' : '-'} | ` +
        `${(100 * ours.mIoU).toFixed(2)} / ${t ? (100 * t.mIoU).toFixed(2) : '-'} | ${mismatch.has(mode) ? `${(100 * mismatch.get(mode)!).toFixed(4)}%` : '-'} |`,
    );
  }
  model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
