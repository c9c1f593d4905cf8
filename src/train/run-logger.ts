// What a run tells people (console lines) and programs (metrics.jsonl). Ranks other than 0 get the
// silent variant, so the training loop never branches on rank to decide whether to log.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface RunLogger {
  info(message: string): void;
  warn(message: string): void;
  /** One JSON object per line in <work_dir>/metrics.jsonl. */
  metrics(record: Record<string, unknown>): void;
  close(): void;
}

export class ConsoleRunLogger implements RunLogger {
  private readonly fd: number | undefined;

  constructor(workDir: string | undefined, private readonly out: (line: string) => void = (l) => process.stdout.write(l + '\n')) {
    if (workDir) {
      fs.mkdirSync(workDir, { recursive: true });
      this.fd = fs.openSync(path.join(workDir, 'metrics.jsonl'), 'a');
    }
  }

  info(message: string): void {
    this.out(message);
  }

  warn(message: string): void {
    process.stderr.write(`warning: ${message}\n`);
  }

  metrics(record: Record<string, unknown>): void {
    if (this.fd !== undefined) fs.writeSync(this.fd, JSON.stringify({ time: new Date().toISOString(), ...record }) + '\n');
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
  }
}

export class SilentRunLogger implements RunLogger {
  info(): void {}
  warn(): void {}
  metrics(): void {}
  close(): void {}
}
