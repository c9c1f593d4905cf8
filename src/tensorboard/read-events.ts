// Reading event files back: one file, or every event file under a log directory, and a plain-text
// rendering of them for `segdist tb dump DIR`.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeEvent, textOf, type DecodedEvent, type SummaryValue } from './event';
import { readRecords, type RecordCrcError } from './record-reader';

export interface EventFileContents {
  path: string;
  events: DecodedEvent[];
  /** The file ends inside a record (a writer killed mid-write, or still writing); `events` has the complete ones. */
  truncated: boolean;
  /** Set only with onCrcError 'stop': the CRC error that ended reading; `events` has the records before it. */
  error?: RecordCrcError;
}

export interface ReadEventsOptions {
  /** 'throw' (default) throws RecordCrcError on a bad CRC; 'stop' returns what came before it, with `error` set. */
  onCrcError?: 'throw' | 'stop';
}

export interface ReadEventDirOptions extends ReadEventsOptions {
  /** Descend into subdirectories (one per run, as TensorBoard lays them out). Default true. */
  recursive?: boolean;
}

/** Reads and decodes every complete record of an event file, checking every CRC. */
export function readEventFile(file: string, opts: ReadEventsOptions = {}): EventFileContents {
  const buf = fs.readFileSync(file);
  const res = readRecords(buf, { onCrcError: opts.onCrcError, source: file });
  const events = res.records.map((rec, i) => {
    try {
      return decodeEvent(rec);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      throw new Error(`${file}: record ${i} at byte offset ${res.offsets[i]} has valid CRCs but is not an Event: ${msg}`);
    }
  });
  const out: EventFileContents = { path: file, events, truncated: res.truncated };
  if (res.error) out.error = res.error;
  return out;
}

/** True for names TensorBoard treats as event files. */
export function isEventFileName(name: string): boolean {
  return name.includes('tfevents');
}

/** Orders event files by directory, then by the creation time in the name, then naturally by the rest. */
function compareEventPaths(a: string, b: string): number {
  const da = path.dirname(a);
  const db = path.dirname(b);
  if (da !== db) return da < db ? -1 : 1;
  const ta = /tfevents\.(\d+)/.exec(path.basename(a));
  const tb = /tfevents\.(\d+)/.exec(path.basename(b));
  if (ta && tb && ta[1] !== tb[1]) return Number(ta[1]) - Number(tb[1]);
  return path.basename(a).localeCompare(path.basename(b), 'en', { numeric: true });
}

/** Paths of the event files under `dir` (or `[dir]` if it is itself a file), in reading order. */
export function listEventFiles(dir: string, opts: { recursive?: boolean } = {}): string[] {
  if (fs.statSync(dir).isFile()) return [dir];
  const recursive = opts.recursive ?? true;
  const found: string[] = [];
  const walk = (d: string): void => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) {
        if (recursive) walk(p);
      } else if (ent.isFile() && isEventFileName(ent.name)) found.push(p);
    }
  };
  walk(dir);
  return found.sort(compareEventPaths);
}

/** Reads every event file under `dir` (see listEventFiles). */
export function readEventDir(dir: string, opts: ReadEventDirOptions = {}): EventFileContents[] {
  return listEventFiles(dir, opts).map((f) => readEventFile(f, opts));
}

// ---------------------------------------------------------------------------------------------
// Text rendering

/** Shortest decimal that reads back as the same float32 (simple_value is a float). */
export function formatFloat32(v: number): string {
  if (!Number.isFinite(v) || Math.fround(v) !== v) return String(v);
  for (let p = 1; p <= 9; p++) {
    const s = v.toPrecision(p);
    if (Math.fround(Number(s)) === v) return String(Number(s));
  }
  return String(v);
}

const COLORSPACES: Record<number, string> = { 1: 'gray', 2: 'gray+alpha', 3: 'rgb', 4: 'rgba', 5: 'yuv', 6: 'bgra' };

function formatValue(v: SummaryValue): string {
  if (v.simpleValue !== undefined) return formatFloat32(v.simpleValue);
  if (v.image) {
    const cs = COLORSPACES[v.image.colorspace] ?? `colorspace ${v.image.colorspace}`;
    return `<image ${v.image.width}x${v.image.height} ${cs}, ${v.image.encodedImage.length} bytes>`;
  }
  const text = textOf(v);
  if (text !== undefined) return JSON.stringify(text);
  if (v.tensor) return `<tensor dtype ${v.tensor.dtype} shape [${v.tensor.shape.join(',')}]>`;
  return '<no value>';
}

/** One line per summary value: `step wall_time tag value` (text JSON-quoted, images summarised). */
export function formatEvent(e: DecodedEvent): string[] {
  const head = `${e.step} ${e.wallTime.toFixed(6)}`;
  const lines: string[] = [];
  if (e.fileVersion !== undefined) lines.push(`${head} (file_version) ${e.fileVersion}`);
  for (const v of e.summary ?? []) lines.push(`${head} ${v.tag === '' ? '(no tag)' : v.tag} ${formatValue(v)}`);
  if (e.summary && e.summary.length === 0) lines.push(`${head} (empty summary)`);
  if (e.unknownFields && lines.length === 0) lines.push(`${head} (event fields ${e.unknownFields.join(',')} not shown)`);
  return lines;
}

/** Renders files as a `# path: N events` header per file followed by their events' lines. */
export function formatEventFiles(files: EventFileContents[], baseDir?: string): string[] {
  const lines: string[] = [];
  for (const f of files) {
    const name = baseDir ? path.relative(baseDir, f.path) || path.basename(f.path) : f.path;
    const notes = [f.truncated ? 'truncated tail ignored' : '', f.error ? `stopped: ${f.error.message}` : ''].filter(Boolean);
    lines.push(`# ${name}: ${f.events.length} events${notes.length ? ` (${notes.join('; ')})` : ''}`);
    for (const e of f.events) lines.push(...formatEvent(e));
  }
  return lines;
}

/**
 * For the dump command: reads every event file under `dir` without stopping at a CRC error
 * (reading of that file stops there and the error is shown in its header). `ok` is false if any
 * file had a CRC error.
 */
export function dumpEventDir(dir: string): { lines: string[]; ok: boolean } {
  const files = readEventDir(dir, { onCrcError: 'stop' });
  const base = fs.statSync(dir).isFile() ? path.dirname(dir) : dir;
  return { lines: formatEventFiles(files, base), ok: files.every((f) => !f.error) };
}
