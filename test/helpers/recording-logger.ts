import { SilentRunLogger } from '../../src/train/run-logger';

/** Keeps the run's lines, and can stop the run (through its AbortController) after a validation. */
export class RecordingLogger extends SilentRunLogger {
  readonly lines: string[] = [];

  constructor(private readonly stopAfter?: { epoch: number; controller: AbortController }) {
    super();
  }

  override info(m: string): void {
    this.lines.push(m);
  }

  override progress(m: string): void {
    this.lines.push(m);
  }

  override warn(m: string): void {
    this.lines.push(`warning: ${m}`);
  }

  override metrics(r: Record<string, unknown>): void {
    if (this.stopAfter && r.kind === 'val' && r.epoch === this.stopAfter.epoch) this.stopAfter.controller.abort();
  }
}
