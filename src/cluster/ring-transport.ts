// The ZeroMQ data plane (dataPlane 'zeromq'; the default is stream-transport.ts, see data-transport.ts).
// A ROUTER bound on an ephemeral port of this host's address, which receives
// from the previous rank in the ring, and a DEALER connected to the next rank's ROUTER. One connection
// per direction, so per-connection ordering (which ZeroMQ guarantees) is all the ring needs.
//
// Why a ROUTER to receive: it tells us who sent each message. The previous rank's DEALER identifies
// itself as `${nonce}:${rank}` with the nonce rank 0 handed out at rendezvous, and anything else that
// connects to the port (a scanner, a stale process from an earlier job, garbage) is dropped before a
// byte of it is parsed. Messages from the real neighbour are decoded and checked; a malformed one from
// there is a protocol error that stops the job, because it means the two ranks disagree.
//
// Messages are routed by collective sequence number: a fast neighbour may start the next collective
// while this rank is finishing the current one, so early messages wait in a stash until their
// collective begins, and a message for a collective that already ended is an error.

import * as zmq from 'zeromq';
import { CollectiveInbox } from './collective-inbox';
import { CommError } from './comm-error';
import { isIpv6, tcpEndpoint } from './host-address';
import { MemoryReclaimer } from './memory-reclaimer';
import { SendQueue } from './send-queue';
import type { DataTransport, DataTransportOptions, RingHandler } from './data-transport';
import { decodeHeader, encodeHeader, WireOp, type WireHeader } from './wire-header';

export type RingTransportOptions = DataTransportOptions;

export class RingTransport implements DataTransport {
  readonly endpoint: string;
  /** ZeroMQ does not say when a zero-copy send's memory is free again. */
  readonly confirmsSends = false;
  readonly prev: number;
  readonly next: number;

  private dealer: zmq.Dealer | null = null;
  private sends: SendQueue | null = null;
  private prevId: Buffer | null = null;
  private connected = false;
  private connectedWaiters: (() => void)[] = [];
  private closing = false;
  private readonly inbox: CollectiveInbox;
  private nextEndpoint = '';
  private dropped = 0;
  private readonly reclaimer: MemoryReclaimer;

  private constructor(
    private readonly router: zmq.Router,
    private readonly opts: RingTransportOptions,
  ) {
    this.endpoint = router.lastEndpoint!;
    this.prev = (opts.rank + opts.worldSize - 1) % opts.worldSize;
    this.next = (opts.rank + 1) % opts.worldSize;
    this.reclaimer = new MemoryReclaimer(opts.minorGcEveryBytes);
    this.inbox = new CollectiveInbox(opts.rank, this.prev, (e) => this.opts.onFatal(e));
    void this.receiveLoop();
  }

  /** Binds this rank's data socket on an ephemeral port of `bindIp`. */
  static async bind(opts: RingTransportOptions): Promise<RingTransport> {
    const router = new zmq.Router({
      linger: 0,
      receiveHighWaterMark: 0,
      // Larger frames can only be junk: ZeroMQ drops such a connection before we see any of it.
      maxMessageSize: opts.subChunkBytes + 4096,
      ipv6: isIpv6(opts.bindIp),
    });
    try {
      await router.bind(tcpEndpoint(opts.bindIp, '*'));
    } catch (err) {
      router.close();
      throw new CommError('usage', `rank ${opts.rank} could not bind its data socket on ${opts.bindIp}: ${(err as Error).message}`);
    }
    return new RingTransport(router, opts);
  }

  /** Connects to the next rank's data endpoint; `nonce` authenticates the ring's connections. */
  connect(endpoints: readonly string[], nonce: string): void {
    const { rank } = this.opts;
    const nextEndpoint = endpoints[this.next];
    this.nextEndpoint = nextEndpoint;
    this.prevId = Buffer.from(`${nonce}:${this.prev}`);
    const dealer = new zmq.Dealer({
      routingId: `${nonce}:${rank}`,
      linger: 0,
      sendHighWaterMark: 0,
      sendTimeout: this.opts.sendTimeoutMs,
      reconnectInterval: 200,
      ipv6: nextEndpoint.includes('['),
    });
    dealer.events.on('handshake', () => {
      this.connected = true;
      for (const w of this.connectedWaiters.splice(0)) w();
    });
    dealer.events.on('disconnect', () => {
      if (this.closing || !this.connected) return;
      this.opts.onLost(this.next, `rank ${rank}'s data connection to rank ${this.next} dropped (process exited or was killed)`);
    });
    dealer.connect(nextEndpoint);
    this.dealer = dealer;
    this.sends = new SendQueue(dealer, (err) =>
      this.opts.onFatal(
        new CommError('timeout', `rank ${rank} could not send to rank ${this.next} for ${(this.opts.sendTimeoutMs / 1000).toFixed(1)} s: ${err.message}`, [this.next]),
      ),
    );
  }

  /** Resolves once the connection to the next rank has completed its handshake. */
  waitConnected(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  connectFailure(): CommError {
    return new CommError('timeout', `rank ${this.opts.rank}: could not connect to rank ${this.next}'s data endpoint ${this.nextEndpoint}`, [this.next]);
  }

  /** Queues [header, payload] to the next rank. The payload is sent without copying: keep it unchanged until delivered. */
  send(header: WireHeader, payload: Uint8Array): void {
    const frame = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    this.sends!.push([encodeHeader(header), frame]);
  }

  afterSends(done: () => void): void {
    done();
  }

  /** Starts delivering messages of collective #seq (including any that arrived early) to `handler` (payloads always in ZeroMQ's buffers). */
  begin(seq: number, handler: RingHandler): void {
    this.inbox.begin(seq, handler);
  }

  /** Stops delivering messages of collective #seq; later messages for it are protocol errors. */
  end(seq: number): void {
    this.inbox.end(seq);
  }

  /** From here on a dropped connection is expected, not a lost rank. */
  beginClose(): void {
    this.closing = true;
  }

  close(): void {
    this.closing = true;
    this.inbox.clear();
    // The event observer has a socket of its own; left open, it aborts the process at thread exit.
    this.dealer?.events.close();
    this.dealer?.close();
    this.router.close();
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.router) {
        if (this.closing) break;
        this.onFrames(frames);
        this.reclaimer.noteReceived(frames[frames.length - 1]?.byteLength ?? 0);
      }
    } catch (err) {
      if (!this.closing) this.opts.onFatal(new CommError('protocol', `rank ${this.opts.rank}: data socket failed: ${(err as Error).message}`));
    }
  }

  private onFrames(frames: Buffer[]): void {
    if (this.prevId === null || frames.length !== 3 || !frames[0].equals(this.prevId)) {
      return this.drop(frames.length === 3 ? 'from a peer that is not rank ' + this.prev : `${frames.length} frames`);
    }
    let h: WireHeader;
    try {
      h = decodeHeader(frames[1], frames[2].byteLength);
      if (h.op < WireOp.AllreduceSum) throw new Error(`control op ${WireOp[h.op]} on the data socket`);
    } catch (err) {
      return this.opts.onFatal(
        new CommError('protocol', `rank ${this.opts.rank} received a malformed message from rank ${this.prev}: ${(err as Error).message}`, [this.prev]),
      );
    }
    this.inbox.deliver(h, frames[2], false);
  }

  private drop(why: string): void {
    this.dropped++;
    if (this.dropped <= 3 || this.dropped % 1000 === 0) {
      (this.opts.warn ?? console.warn)(`segdist: rank ${this.opts.rank}: dropped a message on the data socket (${why}); ${this.dropped} dropped so far`);
    }
  }

  /** Messages dropped because they did not come from the previous rank. */
  get droppedCount(): number {
    return this.dropped;
  }
}
