// Turns a dataset on disk into a list of (image, label) paths, checking that every listed file exists
// before training starts: a missing file found at epoch 3 on rank 5 is far harder to diagnose than one
// reported up front with the list line that named it.
//
// Two layouts:
//   folder layout   <root>/images/<split>/<stem>.{jpg,jpeg,png}, <root>/labels/<split>/<stem>.png,
//                   <root>/<split>.txt with one stem per line (CamVid as shipped here, our synth set)
//   list file       each line "<image path> <label path>", both relative to <root> (or absolute),
//                   as in the semseg / mmseg list files for VOC, ADE20K and Cityscapes

import { readdir, readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { DataError, messageOf } from './data-error';

export interface SampleRef {
  /** Stable name of the sample (the stem, or the image path without extension for list files). */
  id: string;
  /** Absolute or root-joined path of the RGB image. */
  image: string;
  /** Path of the single-channel label PNG. */
  label: string;
  /**
   * Name of a per-sample label lookup (LoadSampleOptions.labelMaps) applied before the dataset-wide
   * one, for formats whose files differ in how they store classes (Cityscapes _labelIds.png beside
   * _labelTrainIds.png).
   */
  labelMap?: string;
}

export interface FolderSplitOptions extends MissingFiles {
  root: string;
  split: string;
  /** Defaults to `<root>/<split>.txt`; relative paths are taken from root. */
  listFile?: string;
  /** Defaults to "images". */
  imageDir?: string;
  /** Defaults to "labels". */
  labelDir?: string;
  /** Tried in order; defaults to [".jpg", ".jpeg", ".png"]. */
  imageExtensions?: string[];
  /** Defaults to ".png". */
  labelExtension?: string;
}

export interface ListFileOptions extends MissingFiles {
  root: string;
  /** The list file; relative paths are taken from root. */
  listFile: string;
}

/** What a reader does with a listed sample whose image or label file does not exist. */
export interface MissingFiles {
  /**
   * Absent (the default): the first one is an error. Given: such samples are left out and each is
   * reported here (data.skip_bad); a malformed list, a duplicate or a missing list file still throws.
   */
  onMissing?: (error: DataError) => void;
}

/** A listed file that does not exist: the one kind of reader error data.skip_bad may skip. */
export class MissingFileError extends DataError {}

export interface ListLine {
  line: number;
  text: string;
}

export async function checkRoot(root: string): Promise<void> {
  let st;
  try {
    st = await stat(root);
  } catch (err) {
    throw new DataError(root, `dataset root folder does not exist (${messageOf(err)})`, { cause: err });
  }
  if (!st.isDirectory()) throw new DataError(root, 'dataset root is not a folder');
}

/** Non-empty lines with their 1-based line numbers; tolerates CRLF and surrounding spaces. */
export async function readListLines(file: string): Promise<ListLine[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new DataError(file, `cannot read list file (${messageOf(err)})`, { cause: err });
  }
  const lines: ListLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const t = raw.trim();
    if (t !== '') lines.push({ line: i + 1, text: t });
  });
  if (lines.length === 0) throw new DataError(file, 'list file is empty');
  return lines;
}

/**
 * Answers "does this file exist" from one readdir per folder instead of a stat per file: a 10k-image
 * split costs a few directory reads.
 */
export class DirectoryCache {
  private readonly listings = new Map<string, Promise<Set<string>>>();

  async has(file: string): Promise<boolean> {
    const dir = path.dirname(file);
    let listing = this.listings.get(dir);
    if (listing === undefined) {
      listing = readdir(dir).then(
        (names) => new Set(names),
        () => new Set<string>(),
      );
      this.listings.set(dir, listing);
    }
    return (await listing).has(path.basename(file));
  }
}

/**
 * Checks every line concurrently but reports the earliest failing line, so the error does not depend
 * on which file-system call happened to finish first. With onMissing, lines whose files are missing
 * are reported there and left out; the lines kept are returned beside their refs.
 */
export async function checkAll(
  lines: ListLine[],
  check: (l: ListLine) => Promise<SampleRef>,
  onMissing?: (e: DataError) => void,
): Promise<{ refs: SampleRef[]; lines: ListLine[] }> {
  const settled = await Promise.allSettled(lines.map(check));
  const refs: SampleRef[] = [];
  const kept: ListLine[] = [];
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') {
      refs.push(s.value);
      kept.push(lines[i]);
    } else if (onMissing !== undefined && s.reason instanceof MissingFileError) {
      onMissing(s.reason);
    } else {
      throw s.reason;
    }
  });
  return { refs, lines: kept };
}

export function rejectDuplicates(refs: SampleRef[], lines: ListLine[], listFile: string): void {
  const seen = new Map<string, number>();
  refs.forEach((ref, i) => {
    const first = seen.get(ref.id);
    if (first !== undefined) {
      throw new DataError(listFile, `sample "${ref.id}" is listed twice (first on line ${first})`, { line: lines[i].line });
    }
    seen.set(ref.id, lines[i].line);
  });
}

/** Reads one split of the folder layout. */
export async function readFolderSplit(opts: FolderSplitOptions): Promise<SampleRef[]> {
  const root = path.resolve(opts.root);
  await checkRoot(root);
  const listFile = path.resolve(root, opts.listFile ?? `${opts.split}.txt`);
  const imageDir = path.join(root, opts.imageDir ?? 'images', opts.split);
  const labelDir = path.join(root, opts.labelDir ?? 'labels', opts.split);
  const exts = opts.imageExtensions ?? ['.jpg', '.jpeg', '.png'];
  const labelExt = opts.labelExtension ?? '.png';
  const lines = await readListLines(listFile);
  const cache = new DirectoryCache();

  const checked = await checkAll(lines, async ({ line, text: stem }): Promise<SampleRef> => {
    if (/\s/.test(stem)) {
      throw new DataError(listFile, `expected one stem per line, got "${stem}" (is this a list file of path pairs?)`, { line });
    }
    const candidates = exts.map((ext) => path.join(imageDir, stem + ext));
    let image: string | undefined;
    for (const c of candidates) {
      if (await cache.has(c)) {
        image = c;
        break;
      }
    }
    if (image === undefined) {
      throw new MissingFileError(listFile, `image for stem "${stem}" not found (tried ${candidates.join(', ')})`, { line });
    }
    const label = path.join(labelDir, stem + labelExt);
    if (!(await cache.has(label))) {
      throw new MissingFileError(listFile, `label for stem "${stem}" not found: ${label}`, { line });
    }
    return { id: stem, image, label };
  }, opts.onMissing);
  rejectDuplicates(checked.refs, checked.lines, listFile);
  return checked.refs;
}

/** Reads a list file of "<image> <label>" path pairs. */
export async function readListFile(opts: ListFileOptions): Promise<SampleRef[]> {
  const root = path.resolve(opts.root);
  await checkRoot(root);
  const listFile = path.resolve(root, opts.listFile);
  const lines = await readListLines(listFile);
  const cache = new DirectoryCache();

  const checked = await checkAll(lines, async ({ line, text }): Promise<SampleRef> => {
    const fields = text.split(/\s+/);
    if (fields.length !== 2) {
      throw new DataError(listFile, `expected "<image path> <label path>", got ${fields.length} field(s): "${text}"`, { line });
    }
    const image = path.resolve(root, fields[0]);
    const label = path.resolve(root, fields[1]);
    if (!(await cache.has(image))) throw new MissingFileError(listFile, `image not found: ${image}`, { line });
    if (!(await cache.has(label))) throw new MissingFileError(listFile, `label not found: ${label}`, { line });
    const rel = path.isAbsolute(fields[0]) ? path.basename(fields[0]) : fields[0];
    const id = rel.slice(0, rel.length - path.extname(rel).length);
    return { id, image, label };
  }, opts.onMissing);
  rejectDuplicates(checked.refs, checked.lines, listFile);
  return checked.refs;
}
