// Decodes one (image, label) pair into plain typed arrays and checks that they belong together.
// The image goes through sharp (any format libvips reads, always 3-channel sRGB); the label never
// does: it is read by png-index so grey values and palette indices arrive untouched.
//
// Images are taken in stored pixel order (EXIF orientation is not applied): label maps are drawn on
// the stored pixels and carry no orientation of their own, so rotating only the image would misalign
// them. A rotated-by-90° pair is caught by the size check below.

import sharp from 'sharp';
import { DataError, messageOf } from './data-error';
import type { SampleRef } from './folder-dataset';
import { readIndexPng } from './png-index';

export interface LoadedSample {
  /** HWC RGB, 8 bits per channel. */
  image: Uint8Array;
  /** HW class indices (ignoreIndex marks pixels that do not count). */
  label: Uint8Array;
  height: number;
  width: number;
}

export interface LoadSampleOptions {
  numClasses: number;
  /** Label value excluded from loss and metrics, usually 255. */
  ignoreIndex: number;
  /**
   * Optional 256-entry lookup applied to stored label values before the range check, e.g. CamVid's
   * "11 = Unlabelled" to the ignore index, Cityscapes ids to train ids, or ADE20K's reduce-zero-label.
   * Build one with buildLabelMap.
   */
  labelMap?: Uint8Array;
  /**
   * Per-sample lookups by name (SampleRef.labelMap), applied before labelMap; e.g. Cityscapes
   * "cityscapes-ids" (label ids -> train ids) for files that have no _labelTrainIds.png.
   */
  labelMaps?: Record<string, Uint8Array>;
}

/** A 256-entry label lookup: the identity except for the given raw -> class entries. */
export function buildLabelMap(entries: Record<number, number> | Iterable<[number, number]>): Uint8Array {
  const map = Uint8Array.from({ length: 256 }, (_, i) => i);
  const pairs = Symbol.iterator in entries ? [...(entries as Iterable<[number, number]>)] : Object.entries(entries);
  for (const [k, v] of pairs) {
    const from = Number(k);
    if (!Number.isInteger(from) || from < 0 || from > 255 || !Number.isInteger(v) || v < 0 || v > 255) {
      throw new Error(`buildLabelMap: entry ${k} -> ${v} is not a pair of integers in 0..255`);
    }
    map[from] = v;
  }
  return map;
}

async function decodeImage(file: string): Promise<{ data: Uint8Array; height: number; width: number }> {
  try {
    // failOn 'warning' turns libjpeg's "premature end of data" into an error instead of a grey tail.
    const { data, info } = await sharp(file, { failOn: 'warning' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), height: info.height, width: info.width };
  } catch (err) {
    throw new DataError(file, `cannot decode image (${messageOf(err)})`, { cause: err });
  }
}

/** Throws naming the first pixel whose (mapped) label is neither a class nor the ignore index. */
function checkLabelRange(label: Uint8Array, width: number, file: string, opts: LoadSampleOptions): void {
  const { numClasses, ignoreIndex } = opts;
  for (let i = 0; i < label.length; i++) {
    const v = label[i];
    if (v >= numClasses && v !== ignoreIndex) {
      let count = 0;
      for (let j = i; j < label.length; j++) if (label[j] >= numClasses && label[j] !== ignoreIndex) count++;
      throw new DataError(
        file,
        `label value ${v} at (x=${i % width}, y=${Math.floor(i / width)}) is not a class index (0..${numClasses - 1}) ` +
          `nor the ignore index ${ignoreIndex}; ${count} pixel(s) out of range` +
          (opts.labelMap === undefined ? '' : ' after the label map'),
      );
    }
  }
}

/** The sample's own lookup (if any) followed by the dataset-wide one. */
function effectiveLabelMap(ref: SampleRef, opts: LoadSampleOptions): Uint8Array | undefined {
  if (ref.labelMap === undefined) return opts.labelMap;
  const own = opts.labelMaps?.[ref.labelMap];
  if (own === undefined || own.length !== 256) {
    throw new Error(`loadSample: ${ref.label} asks for label map "${ref.labelMap}", which is not among the ${Object.keys(opts.labelMaps ?? {}).length} given`);
  }
  if (opts.labelMap === undefined) return own;
  const outer = opts.labelMap;
  return own.map((v) => outer[v]);
}

/** Loads and validates one sample. */
export async function loadSample(ref: SampleRef, opts: LoadSampleOptions): Promise<LoadedSample> {
  if (opts.labelMap !== undefined && opts.labelMap.length !== 256) {
    throw new Error(`loadSample: labelMap must have 256 entries, got ${opts.labelMap.length}`);
  }
  const [image, png] = await Promise.all([decodeImage(ref.image), readIndexPng(ref.label)]);
  if (png.width !== image.width || png.height !== image.height) {
    throw new DataError(
      ref.label,
      `label is ${png.width}x${png.height} but its image ${ref.image} is ${image.width}x${image.height} (width x height)`,
    );
  }
  const label = png.data;
  const map = effectiveLabelMap(ref, opts);
  // One pass maps and flags values that are neither a class nor the ignore index; the slow path
  // that names the first offender only runs when there is one.
  const { numClasses, ignoreIndex } = opts;
  let bad = false;
  if (map !== undefined) {
    for (let i = 0; i < label.length; i++) {
      const v = map[label[i]];
      label[i] = v;
      if (v >= numClasses && v !== ignoreIndex) bad = true;
    }
  } else {
    for (let i = 0; i < label.length; i++) {
      const v = label[i];
      if (v >= numClasses && v !== ignoreIndex) bad = true;
    }
  }
  if (bad) checkLabelRange(label, png.width, ref.label, { ...opts, labelMap: map });
  return { image: image.data, label, height: image.height, width: image.width };
}
