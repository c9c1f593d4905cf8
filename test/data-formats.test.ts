// Each dataset format read from a tiny copy of its exact on-disk layout (test/fixtures/data/formats,
// written by make-format-fixtures.py with Pillow; camvid-mini holds three real CamVid frames), then
// loaded through the config path (prepareData) so the label lookups each format needs are checked too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfig } from '../src/config/load-config';
import { DataError } from '../src/data/data-error';
import { readFolderSplit, readListFile } from '../src/data/folder-dataset';
import { CITYSCAPES_IDS_MAP, cityscapesIdMap, readAde20kSplit, readCityscapesSplit, readVocSplit, reduceZeroLabelMap } from '../src/data/formats';
import { loadSample } from '../src/data/load-sample';
import type { Batch } from '../src/data/batch-loader';
import { prepareData } from '../src/train/data-setup';

const FIX = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'data');
const FORMATS = path.join(FIX, 'formats');
const W = 12;
const H = 8;
const rel = (p: string) => path.relative(FORMATS, p);

async function firstBatch(it: AsyncIterable<Batch>): Promise<Batch> {
  for await (const b of it) return b;
  throw new Error('no batch');
}

async function allLabels(it: AsyncIterable<Batch>): Promise<Set<number>> {
  const seen = new Set<number>();
  for await (const b of it) for (const v of b.labels) seen.add(v);
  return seen;
}

test('voc: ImageSets lists, palette labels keep their indices with 255 borders; aug adds SBD minus val', async () => {
  const root = path.join(FORMATS, 'voc');
  const train = await readVocSplit({ root, split: 'train' });
  assert.deepEqual(train.map((r) => [r.id, rel(r.image), rel(r.label)]), [
    ['2007_000032', 'voc/VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg', 'voc/VOCdevkit/VOC2012/SegmentationClass/2007_000032.png'],
  ]);
  const aug = await readVocSplit({ root, split: 'train', aug: { excludeSplit: 'val' } });
  assert.deepEqual(aug.map((r) => [r.id, path.basename(path.dirname(r.label))]), [
    ['2007_000032', 'SegmentationClass'],
    ['2007_000039', 'SegmentationClassAug'],
  ]);
  // The VOC2012 folder itself works as the root too.
  const val = await readVocSplit({ root: path.join(root, 'VOCdevkit', 'VOC2012'), split: 'val' });
  const s = await loadSample(val[0], { numClasses: 21, ignoreIndex: 255 });
  assert.deepEqual([s.height, s.width], [H, W]);
  assert.deepEqual([s.label[0], s.label[5], s.label[11]], [15, 255, 20]);
  await assert.rejects(readVocSplit({ root: FORMATS, split: 'train' }), /not a Pascal VOC 2012 folder/);
  await assert.rejects(readVocSplit({ root, split: 'test' }), (e: Error) => e instanceof DataError && /Segmentation\/test\.txt: cannot read list file/.test(e.message));
});

test('ade20k: train/val name images/training and images/validation; reduce_zero_label maps 0 to 255 and v to v-1', async () => {
  const root = path.join(FORMATS, 'ade20k', 'ADEChallengeData2016');
  const train = await readAde20kSplit({ root, split: 'train' });
  assert.deepEqual(train.map((r) => r.id), ['ADE_train_00000001', 'ADE_train_00000002']);
  assert.deepEqual((await readAde20kSplit({ root, split: 'validation' })).map((r) => rel(r.label)), ['ade20k/ADEChallengeData2016/annotations/validation/ADE_val_00000001.png']);
  // Raw values run to 150, which is not a class index of a 150-class model...
  await assert.rejects(loadSample(train[0], { numClasses: 150, ignoreIndex: 255 }), /label value 150 at \(x=11, y=1\)/);
  // ...until reduced: row 0 ("other", 0) becomes ignore, 150 becomes 149, 1 + k becomes k.
  const s = await loadSample(train[0], { numClasses: 150, ignoreIndex: 255, labelMap: reduceZeroLabelMap() });
  assert.ok(s.label.subarray(0, W).every((v) => v === 255));
  assert.equal(s.label[1 * W + 11], 149);
  assert.equal(s.label[2 * W + 3], (3 + 2) % 149);
  await assert.rejects(readAde20kSplit({ root, split: 'test' }), /images\/test: cannot list the ADE20K image folder/);
});

test('cityscapes: labelTrainIds when present, else labelIds mapped to the 19 train ids; other gtFine files ignored', async () => {
  const root = path.join(FORMATS, 'cityscapes');
  const train = await readCityscapesSplit({ root, split: 'train' });
  assert.deepEqual(train.map((r) => [r.id, path.basename(r.label), r.labelMap]), [
    ['aachen/aachen_000000_000019', 'aachen_000000_000019_gtFine_labelIds.png', CITYSCAPES_IDS_MAP],
    ['bochum/bochum_000000_000313', 'bochum_000000_000313_gtFine_labelTrainIds.png', undefined],
  ]);
  const opts = { numClasses: 19, ignoreIndex: 255, labelMaps: { [CITYSCAPES_IDS_MAP]: cityscapesIdMap() } };
  const ids = [0, 1, 7, 8, 26, 33];
  const trainId: Record<number, number> = { 7: 0, 8: 1, 26: 13, 33: 18 };
  for (const [i, ref] of train.entries()) {
    const s = await loadSample(ref, opts);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) assert.equal(s.label[y * W + x], trainId[ids[(Math.floor(x / 2) + y + i) % 6]] ?? 255, `${ref.id} (${x},${y})`);
    }
  }
  // Without the map a raw label id (26 = car) is out of range for 19 classes.
  await assert.rejects(loadSample({ ...train[0], labelMap: undefined }, opts), /label value 26|label value 33/);
  const forced = await readCityscapesSplit({ root, split: 'train', labels: 'labelIds' });
  assert.ok(forced.every((r) => r.labelMap === CITYSCAPES_IDS_MAP));
  await assert.rejects(readCityscapesSplit({ root, split: 'train', labels: 'labelTrainIds' }), (e: Error) =>
    e instanceof DataError && /aachen_000000_000019_gtFine_labelTrainIds\.png: label for .*aachen_000000_000019_leftImg8bit\.png not found/.test(e.message));
});

test('list: a semseg-style file of "image label" pairs relative to the root', async () => {
  const refs = await readListFile({ root: FORMATS, listFile: 'list/ade20k_train.txt' });
  assert.deepEqual(refs.map((r) => rel(r.image)), ['ade20k/ADEChallengeData2016/images/training/ADE_train_00000001.jpg', 'ade20k/ADEChallengeData2016/images/training/ADE_train_00000002.jpg']);
});

test('folder: real CamVid frames, Unlabelled (11) configured as ignore', async () => {
  const root = path.join(FIX, 'camvid-mini');
  const refs = await readFolderSplit({ root, split: 'train' });
  assert.equal(refs.length, 2);
  await assert.rejects(loadSample(refs[0], { numClasses: 11, ignoreIndex: 255 }), /label value 11/);
});

/** A config for the fixture of `format` (whole-image validation, a small training crop). */
function cfgFor(format: string, root: string, extra: string[] = []) {
  return resolveConfig({
    overrides: [`data.format=${format}`, `data.root=${root}`, 'data.synthesize=false', 'data.workers=0', 'data.train.batch_size=1', 'data.val.batch_size=1', 'data.train.crop_size=[6,6]', ...extra],
  });
}

test('every format trains and validates through the config (prepareData), with its label lookups', async () => {
  const cases: Array<{ format: string; root: string; extra: string[]; classes: number; trainSize: number }> = [
    { format: 'voc', root: path.join(FORMATS, 'voc'), extra: ['data.num_classes=21', 'data.voc.aug=true'], classes: 21, trainSize: 2 },
    { format: 'ade20k', root: path.join(FORMATS, 'ade20k', 'ADEChallengeData2016'), extra: ['data.num_classes=150'], classes: 150, trainSize: 2 },
    { format: 'cityscapes', root: path.join(FORMATS, 'cityscapes'), extra: ['data.num_classes=19'], classes: 19, trainSize: 2 },
    { format: 'list', root: FORMATS, extra: ['data.num_classes=150', 'data.list.train=list/ade20k_train.txt', 'data.list.val=list/ade20k_train.txt', 'data.label_map={0: 255, 150: 255}'], classes: 150, trainSize: 2 },
  ];
  for (const c of cases) {
    const data = await prepareData(cfgFor(c.format, c.root, c.extra), () => undefined);
    try {
      assert.equal(data.trainSize, c.trainSize, c.format);
      const b = await firstBatch(data.train.batches(0));
      assert.deepEqual([b.n, b.h, b.w], [1, 6, 6], c.format);
      const labels = await allLabels(data.val.batches(0));
      for (const v of labels) assert.ok(v === 255 || (v >= 0 && v < c.classes), `${c.format}: label ${v}`);
      assert.ok(labels.has(255), `${c.format}: some ignore pixels`);
    } finally {
      await data.close();
    }
  }
  // ade20k with reduce_zero_label off keeps 0 as a class and rejects 150.
  const raw = await prepareData(cfgFor('ade20k', path.join(FORMATS, 'ade20k', 'ADEChallengeData2016'), ['data.num_classes=150', 'data.ade20k.reduce_zero_label=false']), () => undefined);
  await assert.rejects(firstBatch(raw.val.batches(0)), /label value 150/);
  await raw.close();
});

test('CamVid frames train and validate with the folder reader and label_map {11: 255} (PSPNet transforms, worker threads)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'segdist-camvid-'));
  try {
    cpSync(path.join(FIX, 'camvid-mini'), dir, { recursive: true });
    const cfg = resolveConfig({
      overrides: [
        `data.root=${dir}`, 'data.synthesize=false', 'data.num_classes=11', 'data.label_map={11: 255}', 'data.workers=2', 'data.train.batch_size=2', 'data.val.batch_size=1',
        'data.train.crop_size=[96,128]',
        'data.train.transforms=[{type: random_resize, scale_range: [0.5, 2.0]}, {type: random_rotate, degrees: 10}, {type: gaussian_blur}, {type: flip}, {type: pad}, {type: random_crop, cat_max_ratio: 0.75}, {type: photometric}, {type: normalize}]',
      ],
    });
    const lines: string[] = [];
    const data = await prepareData(cfg, (m) => lines.push(m));
    try {
      assert.match(lines.join('\n'), /data: folder dataset at .*: 2 train \/ 1 val samples; prepared 2 worker threads, 2 batch\(es\) ahead/);
      const seen = new Set<number>();
      for (const epoch of [0, 1]) {
        for await (const b of data.train.batches(epoch)) {
          assert.deepEqual([b.n, b.h, b.w], [2, 96, 128]);
          for (const v of b.labels) seen.add(v);
        }
      }
      assert.ok(!seen.has(11), 'Unlabelled must arrive as ignore');
      assert.ok(seen.has(255) && [...seen].filter((v) => v < 11).length >= 3, [...seen].join(','));
      const val = await firstBatch(data.val.batches(0));
      assert.deepEqual([val.n, val.h, val.w], [1, 360, 480]);
    } finally {
      await data.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
