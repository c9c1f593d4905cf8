// One error type for everything that can go wrong between ranks. It has to survive a trip from the comm
// thread to the compute thread (postMessage clones only plain data), and a launcher wants to know which
// ranks to blame and whether a restart can help, so the kind and the ranks travel next to the message.

export type CommErrorCode =
  /** A wait ran past its timeout; `ranks` are the ranks that did not arrive. */
  | 'timeout'
  /** A peer's process or connection went away; `ranks` is the lost rank. */
  | 'lost-rank'
  /** A peer sent something this rank could not accept (another collective, size, dtype or order). */
  | 'protocol'
  /** Rank 0 refused this rank at rendezvous (token, world size, duplicate rank, settings). */
  | 'refused'
  /** The communicator was closed, or failed earlier and cannot be used any more. */
  | 'closed'
  /** Bad arguments or settings on this rank. */
  | 'usage';

export interface CommErrorData {
  code: CommErrorCode;
  message: string;
  ranks: number[];
}

export class CommError extends Error {
  readonly code: CommErrorCode;
  /** The ranks the error is about: those that did not arrive, or the rank that was lost. */
  readonly ranks: readonly number[];

  constructor(code: CommErrorCode, message: string, ranks: readonly number[] = []) {
    super(message);
    this.name = 'CommError';
    this.code = code;
    this.ranks = [...ranks];
  }

  toData(): CommErrorData {
    return { code: this.code, message: this.message, ranks: [...this.ranks] };
  }

  static fromData(d: CommErrorData): CommError {
    return new CommError(d.code, d.message, d.ranks);
  }

  /** Wraps anything thrown into a CommError, keeping a CommError as it is. */
  static from(err: unknown, code: CommErrorCode = 'protocol'): CommError {
    if (err instanceof CommError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new CommError(code, message);
  }
}
