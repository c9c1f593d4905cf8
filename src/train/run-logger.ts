// What a run tells people (console lines, a progress bar) and programs (metrics.jsonl). Ranks other
// than 0 get the silent variant, so the training loop never branches on rank to decide whether to log.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MultiBar, Presets, SingleBar } from 'cli-progress';

export interface RunLogger {
  info(message: string): void;
  warn(message: string): void;
  /** One JSON object per line in <work_dir>/metrics.jsonl. */
  metrics(record: Record<string, unknown>): void;
  /** An epoch of `total` steps begins, `done` of them already done (a resumed epoch). */
  epochStart(label: string, total: number, done: number): void;
  /** After every step: cheap, no values read from the device. */
  epochTick(done: number): void;
  /** The progress line of a logging step: the bar's status on a terminal, a printed line otherwise. */
  progress(line: string): void;
  epochEnd(): void;
  close(): void;
}

export class ConsoleRunLogger implements RunLogger {
  private readonly fd: number | undefined;
  private readonly tty: boolean;
  private bars: MultiBar | undefined;
  private bar: SingleBar | undefined;

  constructor(workDir: string | undefined, private readonly stream: NodeJS.WriteStream = process.stdout) {
    this.tty = Boolean(stream.isTTY);
    if (workDir) {
      fs.mkdirSync(workDir, { recursive: true });
      this.fd = fs.openSync(path.join(workDir, 'metrics.jsonl'), 'a');
    }
  }

  info(message: string): void {
    // While a bar is drawn, lines go above it through the bar, which redraws itself below them.
    if (this.bars) this.bars.log(message + '\n');
    else this.stream.write(message + '\n');
  }

  warn(message: string): void {
    if (this.bars) this.bars.log(`warning: ${message}\n`);
    else process.stderr.write(`warning: ${message}\n`);
  }

  metrics(record: Record<string, unknown>): void {
    if (this.fd !== undefined) fs.writeSync(this.fd, JSON.stringify({ time: new Date().toISOString(), ...record }) + '\n');
  }

  epochStart(label: string, total: number, done: number): void {
    if (!this.tty) return;
    this.bars = new MultiBar({ format: '{label} [{bar}] {value}/{total} {status}', stream: this.stream, hideCursor: true, clearOnComplete: false, barsize: 24 }, Presets.shades_classic);
    this.bar = this.bars.create(total, done, { label, status: '' });
  }

  epochTick(done: number): void {
    this.bar?.update(done);
  }

  progress(line: string): void {
    if (this.bar) this.bar.update({ status: line.replace(/^epoch \S+ iter \S+ \(\d+\) /, '') });
    else this.stream.write(line + '\n');
  }

  epochEnd(): void {
    this.bars?.stop();
    this.bars = undefined;
    this.bar = undefined;
  }

  close(): void {
    this.epochEnd();
    if (this.fd !== undefined) fs.closeSync(this.fd);
  }
}

export class SilentRunLogger implements RunLogger {
  info(_message: string): void {}
  warn(_message: string): void {}
  metrics(_record: Record<string, unknown>): void {}
  epochStart(_label: string, _total: number, _done: number): void {}
  epochTick(_done: number): void {}
  progress(_line: string): void {}
  epochEnd(): void {}
  close(): void {}
}

/** For ranks other than 0: nothing on the console but warnings, marked with the rank. */
export class RankRunLogger extends SilentRunLogger {
  constructor(private readonly rank: number) {
    super();
  }

  override warn(message: string): void {
    process.stderr.write(`warning: [rank ${this.rank}] ${message}\n`);
  }
}
