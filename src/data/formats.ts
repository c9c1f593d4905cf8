// Readers for the public datasets' own layouts, each turning one split into SampleRefs (sorted, every
// file checked to exist up front), plus the label lookups those layouts need. The folder and list
// layouts live in folder-dataset.ts.
//
//   voc         VOC2012/JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNG: the index is
//               the class, 255 the object border = ignore), ImageSets/Segmentation/<split>.txt.
//               With aug, the training split also takes ImageSets/Segmentation/aug.txt with labels
//               in SegmentationClassAug/ (the SBD set converted to index PNGs, as mmseg's
//               voc_aug converter and semseg's train_aug list use), minus every id of the val split.
//   ade20k      ADEChallengeData2016/images/{training,validation}/<id>.jpg and
//               annotations/{training,validation}/<id>.png; 0 is "other". reduce_zero_label (the
//               mmseg setting for ADE20K) maps 0 -> 255 and v -> v - 1, giving 150 classes.
//   cityscapes  leftImg8bit/<split>/<city>/<name>_leftImg8bit.png with
//               gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png when present, else
//               <name>_gtFine_labelIds.png mapped to the 19 train ids (every other id -> 255).

import { readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { DataError, messageOf } from './data-error';
import { checkAll, checkRoot, DirectoryCache, MissingFileError, readListLines, rejectDuplicates, type MissingFiles, type SampleRef } from './folder-dataset';

// ---------------------------------------------------------------------------------------------
// Label lookups

/** Cityscapes label id -> train id for the 19 evaluated classes (cityscapesScripts' labels.py); the rest are 255. */
export const CITYSCAPES_TRAIN_IDS: ReadonlyArray<[number, number]> = [
  [7, 0], // road
  [8, 1], // sidewalk
  [11, 2], // building
  [12, 3], // wall
  [13, 4], // fence
  [17, 5], // pole
  [19, 6], // traffic light
  [20, 7], // traffic sign
  [21, 8], // vegetation
  [22, 9], // terrain
  [23, 10], // sky
  [24, 11], // person
  [25, 12], // rider
  [26, 13], // car
  [27, 14], // truck
  [28, 15], // bus
  [31, 16], // train
  [32, 17], // motorcycle
  [33, 18], // bicycle
];

export const CITYSCAPES_CLASSES = [
  'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation', 'terrain',
  'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle',
];

/** The name SampleRef.labelMap uses for Cityscapes _labelIds.png files. */
export const CITYSCAPES_IDS_MAP = 'cityscapes-ids';

/** 256-entry lookup: Cityscapes label ids to train ids, 255 elsewhere. */
export function cityscapesIdMap(ignoreIndex = 255): Uint8Array {
  const map = new Uint8Array(256).fill(ignoreIndex);
  for (const [id, train] of CITYSCAPES_TRAIN_IDS) map[id] = train;
  return map;
}

/** mmseg's reduce_zero_label as a lookup: 0 -> ignore, v -> v - 1, and the ignore value stays. */
export function reduceZeroLabelMap(ignoreIndex = 255): Uint8Array {
  const map = new Uint8Array(256);
  map[0] = ignoreIndex;
  for (let v = 1; v < 256; v++) map[v] = v - 1;
  map[ignoreIndex] = ignoreIndex;
  return map;
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function listDir(dir: string, what: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (err) {
    throw new DataError(dir, `cannot list the ${what} folder (${messageOf(err)})`, { cause: err });
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Reports a missing file to onMissing, or throws it. */
function missing(e: MissingFileError, onMissing?: (e: DataError) => void): void {
  if (onMissing === undefined) throw e;
  onMissing(e);
}

function stemOf(file: string): string {
  return file.slice(0, file.length - path.extname(file).length);
}

// ---------------------------------------------------------------------------------------------
// Pascal VOC 2012

export interface VocSplitOptions extends MissingFiles {
  /** VOC2012 (the folder holding JPEGImages); VOCdevkit or VOCdevkit's parent also work. */
  root: string;
  split: string;
  /** Add ImageSets/Segmentation/<augList> with labels in <augDir>, minus the ids of `exclude`. */
  aug?: { list?: string; labelDir?: string; excludeSplit?: string };
}

/** The folder that holds JPEGImages: root itself, root/VOC2012 or root/VOCdevkit/VOC2012. */
export async function vocRoot(root: string): Promise<string> {
  const r = path.resolve(root);
  await checkRoot(r);
  for (const c of [r, path.join(r, 'VOC2012'), path.join(r, 'VOCdevkit', 'VOC2012')]) {
    if (await isDir(path.join(c, 'JPEGImages'))) return c;
  }
  throw new DataError(r, 'not a Pascal VOC 2012 folder: no JPEGImages in it, in VOC2012/ or in VOCdevkit/VOC2012/');
}

async function vocList(dir: string, listFile: string, labelDir: string, cache: DirectoryCache, onMissing?: (e: DataError) => void): Promise<SampleRef[]> {
  const lines = await readListLines(listFile);
  const checked = await checkAll(
    lines,
    async ({ line, text }) => {
      if (/\s/.test(text)) throw new DataError(listFile, `expected one image id per line, got "${text}"`, { line });
      const image = path.join(dir, 'JPEGImages', `${text}.jpg`);
      const label = path.join(dir, labelDir, `${text}.png`);
      if (!(await cache.has(image))) throw new MissingFileError(listFile, `image for id "${text}" not found: ${image}`, { line });
      if (!(await cache.has(label))) throw new MissingFileError(listFile, `label for id "${text}" not found: ${label}`, { line });
      return { id: text, image, label };
    },
    onMissing,
  );
  rejectDuplicates(checked.refs, checked.lines, listFile);
  return checked.refs;
}

export async function readVocSplit(opts: VocSplitOptions): Promise<SampleRef[]> {
  const dir = await vocRoot(opts.root);
  const sets = path.join(dir, 'ImageSets', 'Segmentation');
  const cache = new DirectoryCache();
  const refs = await vocList(dir, path.join(sets, `${opts.split}.txt`), 'SegmentationClass', cache, opts.onMissing);
  if (opts.aug === undefined) return refs;
  const augList = path.join(sets, opts.aug.list ?? 'aug.txt');
  const extra = await vocList(dir, augList, opts.aug.labelDir ?? 'SegmentationClassAug', cache, opts.onMissing);
  const skip = new Set(refs.map((r) => r.id));
  if (opts.aug.excludeSplit !== undefined) {
    for (const l of await readListLines(path.join(sets, `${opts.aug.excludeSplit}.txt`))) skip.add(l.text);
  }
  return [...refs, ...extra.filter((r) => !skip.has(r.id))];
}

// ---------------------------------------------------------------------------------------------
// ADE20K (ADEChallengeData2016)

const ADE_SPLITS: Record<string, string> = { train: 'training', val: 'validation' };

export async function readAde20kSplit(opts: { root: string; split: string } & MissingFiles): Promise<SampleRef[]> {
  const root = path.resolve(opts.root);
  await checkRoot(root);
  let split = opts.split;
  if (!(await isDir(path.join(root, 'images', split))) && ADE_SPLITS[split] !== undefined) split = ADE_SPLITS[split];
  const imageDir = path.join(root, 'images', split);
  const labelDir = path.join(root, 'annotations', split);
  const images = (await listDir(imageDir, 'ADE20K image')).filter((f) => /\.(jpe?g|png)$/i.test(f));
  if (images.length === 0) throw new DataError(imageDir, 'no images (.jpg, .png) in the ADE20K split folder');
  const labels = new Set(await listDir(labelDir, 'ADE20K annotation'));
  const refs: SampleRef[] = [];
  for (const f of images) {
    const stem = stemOf(f);
    const label = path.join(labelDir, `${stem}.png`);
    if (labels.has(`${stem}.png`)) refs.push({ id: stem, image: path.join(imageDir, f), label });
    else missing(new MissingFileError(label, `annotation for ${path.join(imageDir, f)} not found`), opts.onMissing);
  }
  return refs;
}

// ---------------------------------------------------------------------------------------------
// Cityscapes

export type CityscapesLabels = 'auto' | 'labelIds' | 'labelTrainIds';

export interface CityscapesSplitOptions extends MissingFiles {
  root: string;
  split: string;
  /** gtFine (default) or gtCoarse. */
  gtDir?: string;
  /** auto (default): _labelTrainIds.png when present, else _labelIds.png mapped to train ids. */
  labels?: CityscapesLabels;
}

export async function readCityscapesSplit(opts: CityscapesSplitOptions): Promise<SampleRef[]> {
  const root = path.resolve(opts.root);
  await checkRoot(root);
  const gt = opts.gtDir ?? 'gtFine';
  const mode = opts.labels ?? 'auto';
  const imageRoot = path.join(root, 'leftImg8bit', opts.split);
  const labelRoot = path.join(root, gt, opts.split);
  const cities = [];
  for (const c of await listDir(imageRoot, 'Cityscapes leftImg8bit split')) if (await isDir(path.join(imageRoot, c))) cities.push(c);
  const refs: SampleRef[] = [];
  const suffix = '_leftImg8bit.png';
  for (const city of cities) {
    const labelFiles = new Set(await listDir(path.join(labelRoot, city), `Cityscapes ${gt} city`));
    for (const f of await listDir(path.join(imageRoot, city), 'Cityscapes city')) {
      if (!f.endsWith(suffix)) continue;
      const name = f.slice(0, -suffix.length);
      const image = path.join(imageRoot, city, f);
      const trainIds = `${name}_${gt}_labelTrainIds.png`;
      const ids = `${name}_${gt}_labelIds.png`;
      if (mode !== 'labelIds' && labelFiles.has(trainIds)) {
        refs.push({ id: `${city}/${name}`, image, label: path.join(labelRoot, city, trainIds) });
      } else if (mode !== 'labelTrainIds' && labelFiles.has(ids)) {
        refs.push({ id: `${city}/${name}`, image, label: path.join(labelRoot, city, ids), labelMap: CITYSCAPES_IDS_MAP });
      } else {
        const wanted = mode === 'labelIds' ? ids : mode === 'labelTrainIds' ? trainIds : `${trainIds} or ${ids}`;
        missing(new MissingFileError(path.join(labelRoot, city, mode === 'labelIds' ? ids : trainIds), `label for ${image} not found (looked for ${wanted})`), opts.onMissing);
      }
    }
  }
  if (refs.length === 0) throw new DataError(imageRoot, `no *${suffix} images under the city folders of this split`);
  return refs;
}
