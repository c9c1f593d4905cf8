// Progress of eval and infer: a bar (cli-progress) on an interactive stderr, otherwise a plain line now
// and then through the caller's log, so logs and pipes get readable text instead of carriage returns.
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import { formatDuration } from '../train/progress';

export interface Progress {
  /** One more item done. */
  tick(): void;
  /** A line (a warning) printed above the bar, or as is without one. */
  note(line: string): void;
  /** Ends the bar; idempotent. */
  stop(): void;
}

export interface ProgressOptions {
  total: number;
  /** e.g. "eval val". */
  label: string;
  /** e.g. "images". */
  unit: string;
  /** Where the bar goes; default process.stderr. The bar is drawn only when it is a TTY. */
  stream?: NodeJS.WriteStream;
  /** Plain progress lines when there is no bar; absent: none. */
  plain?: (line: string) => void;
  /** Least time between plain lines (the last one is always printed). Default 5000 ms. */
  intervalMs?: number;
  /** Where notes go without a bar; default the stream. */
  warn?: (line: string) => void;
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const warn = opts.warn ?? ((line: string) => stream.write(`${line}\n`));
  const started = Date.now();
  let done = 0;
  if (stream.isTTY && opts.total > 0) {
    const multi = new MultiBar(
      {
        stream,
        format: `${opts.label} [{bar}] {value}/{total} ${opts.unit} | {rate} ${opts.unit}/s | ETA {eta_formatted}`,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 20,
      },
      Presets.shades_classic,
    );
    const bar: SingleBar = multi.create(opts.total, 0, { rate: '--' });
    let stopped = false;
    return {
      tick() {
        done++;
        bar.update(done, { rate: rate(done, started) });
      },
      note(line) {
        if (stopped) warn(line);
        else multi.log(`${line}\n`);
      },
      stop() {
        if (stopped) return;
        stopped = true;
        multi.stop();
      },
    };
  }
  const interval = opts.intervalMs ?? 5000;
  let last = started;
  const line = () => {
    const elapsed = (Date.now() - started) / 1000;
    const eta = done > 0 ? ((opts.total - done) * elapsed) / done : NaN;
    return `${opts.label}: ${done}/${opts.total} ${opts.unit}, ${rate(done, started)} ${opts.unit}/s, elapsed ${formatDuration(elapsed)}, eta ${formatDuration(eta)}`;
  };
  return {
    tick() {
      done++;
      const now = Date.now();
      if (opts.plain && (now - last >= interval || done === opts.total)) {
        last = now;
        opts.plain(line());
      }
    },
    note: warn,
    stop() {},
  };
}

function rate(done: number, started: number): string {
  const s = (Date.now() - started) / 1000;
  return s > 0 ? (done / s).toFixed(2) : '--';
}
