// Routing of arriving ring messages by collective sequence number, the same on every data plane.
// Ranks run their collectives in the same order but not in step: the previous rank may already be
// sending the next collective while this one finishes the current one. So a message of the running
// collective goes to its handler; one of a collective that has not begun here waits in a stash until
// begin() (the transport may also hold it back in the kernel, stream-transport.ts); one of a collective
// that already ended here means the two ranks disagree, and stops the job.

import { CommError } from './comm-error';
import type { RingHandler } from './data-transport';
import { WireOp, type WireHeader } from './wire-header';

export class CollectiveInbox {
  private activeSeq = -1;
  private activeHandler: RingHandler | null = null;
  private lastEndedSeq = 0;
  private readonly stash = new Map<number, [WireHeader, Uint8Array][]>();

  /** `rank` receives from `prev`; `onFatal` hears of a message for a collective that already ended. */
  constructor(
    private readonly rank: number,
    private readonly prev: number,
    private readonly onFatal: (error: CommError) => void,
  ) {}

  /** The running collective's handler, or null between collectives. */
  get handler(): RingHandler | null {
    return this.activeHandler;
  }

  /** Whether collective #seq is the one running here. */
  isActive(seq: number): boolean {
    return seq === this.activeSeq && this.activeHandler !== null;
  }

  /** Whether collective #seq has not begun here yet (its messages are early, not late). */
  isAhead(seq: number): boolean {
    return seq !== this.activeSeq && seq > this.lastEndedSeq;
  }

  /** Runs collective #seq: delivers what arrived for it early, then everything as it comes. */
  begin(seq: number, handler: RingHandler): void {
    this.activeSeq = seq;
    this.activeHandler = handler;
    const early = this.stash.get(seq);
    if (early === undefined) return;
    this.stash.delete(seq);
    for (const [h, p] of early) {
      if (this.activeHandler !== handler) break; // the collective failed part way through the stash
      handler(h, p, false);
    }
  }

  /** Collective #seq is over here; a later message for it is a protocol error. */
  end(seq: number): void {
    if (this.activeSeq === seq) {
      this.activeSeq = -1;
      this.activeHandler = null;
    }
    this.lastEndedSeq = Math.max(this.lastEndedSeq, seq);
    this.stash.delete(seq);
  }

  /** A whole message from the previous rank: to the handler, into the stash, or a protocol error. */
  deliver(h: WireHeader, payload: Uint8Array, placed: boolean): void {
    if (this.isActive(h.seq)) return this.activeHandler!(h, payload, placed);
    if (h.seq > this.lastEndedSeq) {
      // A view placed for a collective cannot be here: transports place only for the running one.
      const list = this.stash.get(h.seq);
      if (list === undefined) this.stash.set(h.seq, [[h, payload]]);
      else list.push([h, payload]);
      return;
    }
    this.onFatal(
      new CommError(
        'protocol',
        `rank ${this.rank} received a ${WireOp[h.op]} message for collective #${h.seq} from rank ${this.prev}, ` +
          `but that collective already ended here (latest #${this.lastEndedSeq})`,
        [this.prev],
      ),
    );
  }

  /** Forgets everything (the transport is closing). */
  clear(): void {
    this.activeHandler = null;
    this.stash.clear();
  }
}
