// One error type for everything the data pipeline rejects, carrying the file (and list line) at
// fault as fields as well as in the message, so a command can report them without parsing text.

export class DataError extends Error {
  readonly file: string;
  readonly line: number | undefined;
  /** The message without the leading "file[:line]: ". */
  readonly detail: string;

  constructor(file: string, message: string, opts: { line?: number; cause?: unknown } = {}) {
    const where = opts.line === undefined ? file : `${file}:${opts.line}`;
    super(`${where}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'DataError';
    this.file = file;
    this.line = opts.line;
    this.detail = message;
  }
}

/**
 * The message of an unknown thrown value on one line, for wrapping library errors (libvips repeats
 * the same warning over several lines; one line each, once, reads better in a log).
 */
export function messageOf(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return [...new Set(lines)].join('; ');
}
