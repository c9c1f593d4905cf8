// TensorBoard event file writer: scalars, PNG images and text, in the same encoding PyTorch's
// torch.utils.tensorboard.SummaryWriter produces.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeEvent, fileVersionEvent, imageEvent, scalarEvent, textEvent, type TbEvent } from './event';
import { RecordWriter } from './record-writer';

export interface SummaryWriterOptions {
  /**
   * Buffered events reach the file once this many ms have passed since the last flush (default
   * 10000). The check runs on every log call and on an unref'd timer, so an idle writer flushes
   * too (within about twice this), and an event loop starved by synchronous work still flushes on
   * the next log call. 0 writes each event as soon as it is logged.
   */
  flushEveryMs?: number;
  /** Appended to the file name, as in PyTorch (e.g. ".rank0"). */
  filenameSuffix?: string;
}

/** What training code logs to: implemented by SummaryWriter (rank 0) and NullSummaryWriter (other ranks). */
export interface SummaryWriterLike {
  /** The event file being written ('' for NullSummaryWriter). */
  readonly path: string;
  /** A scalar (stored as float32). `wallTime` is in seconds since the epoch; default now. */
  scalar(tag: string, value: number, step: number, wallTime?: number): void;
  /** An already encoded PNG image of the given size. */
  image(tag: string, png: Buffer, height: number, width: number, step: number): void;
  /** UTF-8 text, shown by TensorBoard's text plugin (which renders Markdown). */
  text(tag: string, text: string, step: number): void;
  /** Writes everything buffered so far. */
  flush(): void;
  /** Flushes and closes; later log calls throw. Idempotent. */
  close(): void;
}

/** Flush pending data above this size regardless of the timer (images can be large). */
const MAX_PENDING_BYTES = 4 << 20;
const DEFAULT_FLUSH_MS = 10_000;

/** Per-process counter making file names unique within a second, like PyTorch's global uid. */
let fileCounter = 0;

/** Open writers, flushed synchronously if the process exits without closing them. */
const openWriters = new Set<SummaryWriter>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const w of openWriters) {
      try {
        w.flush();
      } catch {
        // Nothing useful can be done about a failed write while exiting.
      }
    }
  });
}

/** PNG colour type from the IHDR chunk mapped to TensorBoard's colorspace, with IHDR's size. */
function pngInfo(png: Buffer): { width: number; height: number; colorspace: number } | undefined {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (png.length < 33 || sig.some((b, i) => png[i] !== b) || png.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  const colorType = png[25];
  // 0 gray, 2 RGB, 3 palette (shown as RGB), 4 gray+alpha, 6 RGBA.
  const colorspace = colorType === 0 ? 1 : colorType === 4 ? 2 : colorType === 6 ? 4 : 3;
  return { width, height, colorspace };
}

function checkTag(tag: string): void {
  if (typeof tag !== 'string' || tag.length === 0) throw new TypeError('summary tag must be a non-empty string');
}

function checkStep(step: number): void {
  if (!Number.isSafeInteger(step)) throw new RangeError(`summary step must be an integer, got ${step}`);
}

export class SummaryWriter implements SummaryWriterLike {
  readonly path: string;
  private readonly records: RecordWriter;
  private readonly flushEveryMs: number;
  private lastFlush = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(logDir: string, opts: SummaryWriterOptions = {}) {
    const flushEveryMs = opts.flushEveryMs ?? DEFAULT_FLUSH_MS;
    if (!(flushEveryMs >= 0)) throw new RangeError(`flushEveryMs must be >= 0, got ${flushEveryMs}`);
    this.flushEveryMs = flushEveryMs;
    fs.mkdirSync(logDir, { recursive: true });
    const now = Date.now();
    const name =
      `events.out.tfevents.${Math.floor(now / 1000)}.${os.hostname()}.${process.pid}.${fileCounter++}` +
      (opts.filenameSuffix ?? '');
    this.path = path.join(logDir, name);
    this.records = new RecordWriter(this.path);
    // The version record goes out at once so a freshly started run is already a valid event file.
    this.records.append(encodeEvent(fileVersionEvent(now / 1000)));
    this.records.flush();
    this.lastFlush = now;
    openWriters.add(this);
    installExitHook();
    if (flushEveryMs > 0) {
      this.timer = setInterval(() => this.maybeFlush(), Math.max(flushEveryMs, 50));
      this.timer.unref();
    }
  }

  scalar(tag: string, value: number, step: number, wallTime?: number): void {
    checkTag(tag);
    checkStep(step);
    if (typeof value !== 'number') throw new TypeError(`scalar "${tag}" must be a number, got ${typeof value}`);
    this.add(scalarEvent(tag, value, step, wallTime ?? Date.now() / 1000));
  }

  image(tag: string, png: Buffer, height: number, width: number, step: number): void {
    checkTag(tag);
    checkStep(step);
    if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
      throw new RangeError(`image "${tag}": bad size ${height}x${width}`);
    }
    const info = pngInfo(png);
    if (info && (info.height !== height || info.width !== width)) {
      throw new RangeError(`image "${tag}": given ${height}x${width} (HxW) but the PNG is ${info.height}x${info.width}`);
    }
    this.add(imageEvent(tag, png, height, width, info?.colorspace ?? 3, step, Date.now() / 1000));
  }

  text(tag: string, text: string, step: number): void {
    checkTag(tag);
    checkStep(step);
    this.add(textEvent(tag, String(text), step, Date.now() / 1000));
  }

  flush(): void {
    this.records.flush();
    this.lastFlush = Date.now();
  }

  close(): void {
    if (this.records.closed) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    openWriters.delete(this);
    this.records.close();
  }

  private add(e: TbEvent): void {
    if (this.records.closed) throw new Error(`SummaryWriter for ${this.path} is closed`);
    this.records.append(encodeEvent(e));
    if (this.flushEveryMs === 0 || this.records.pendingBytes >= MAX_PENDING_BYTES) this.flush();
    else this.maybeFlush();
  }

  private maybeFlush(): void {
    if (this.records.pendingBytes > 0 && Date.now() - this.lastFlush >= this.flushEveryMs) this.flush();
  }
}

/** A writer that writes nothing: for ranks other than 0, and for runs with logging off. */
export class NullSummaryWriter implements SummaryWriterLike {
  readonly path = '';
  scalar(_tag: string, _value: number, _step: number, _wallTime?: number): void {}
  image(_tag: string, _png: Buffer, _height: number, _width: number, _step: number): void {}
  text(_tag: string, _text: string, _step: number): void {}
  flush(): void {}
  close(): void {}
}
