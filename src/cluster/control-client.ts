// Every rank's end of the control plane: a DEALER connected to rank 0's rendezvous hub. It registers the
// rank, then carries barriers, status probes and lost-rank reports for the comm engine. A dropped
// connection to the hub means rank 0 is gone, which no collective can survive, so it is reported as
// such at once rather than discovered later as a timeout.

import * as zmq from 'zeromq';
import { CommError } from './comm-error';
import {
  decodeControl,
  encodeControl,
  field,
  isCommErrorData,
  isInt,
  isRankStatus,
  isString,
  type ControlMessage,
  type RankStatus,
  type RegisterBody,
  type WelcomeBody,
} from './control-message';
import { isIpv6 } from './host-address';
import { SendQueue } from './send-queue';
import { WireOp } from './wire-header';
import { withTimeout } from './with-timeout';

export interface ControlClientOptions {
  rank: number;
  worldSize: number;
  hubEndpoint: string;
  hubIp: string;
  sendTimeoutMs: number;
  /** Called once when the job must stop: rank 0 aborted it, or rank 0 itself was lost. */
  onAbort: (error: CommError) => void;
  /** Answers rank 0's status probes. */
  status: () => RankStatus;
  warn?: (message: string) => void;
}

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: CommError) => void;
}

export class ControlClient {
  private readonly socket: zmq.Dealer;
  private readonly sends: SendQueue;
  private closing = false;
  private connected = false;
  private registerWaiter: Waiter<WelcomeBody> | null = null;
  private goWaiter: Waiter<void> | null = null;
  private readonly barrierWaiters = new Map<number, Waiter<void>>();
  private readonly queryWaiters = new Map<number, Waiter<(RankStatus | null)[]>>();
  private nextQueryId = 1;
  private abortError: CommError | null = null;

  constructor(private readonly opts: ControlClientOptions) {
    this.socket = new zmq.Dealer({
      linger: 1000,
      maxMessageSize: 1 << 20,
      sendHighWaterMark: 0,
      sendTimeout: opts.sendTimeoutMs,
      reconnectInterval: 200,
      ipv6: isIpv6(opts.hubIp),
    });
    this.sends = new SendQueue(this.socket, (err) => this.abort(new CommError('lost-rank', `rank ${opts.rank} could not reach rank 0: ${err.message}`, [0])));
    this.socket.events.on('handshake', () => {
      this.connected = true;
    });
    this.socket.events.on('disconnect', () => {
      if (!this.connected) return;
      if (this.closing) {
        // Rank 0 closed first: nothing is pending that matters; let a close barrier end now.
        for (const w of this.barrierWaiters.values()) w.reject(new CommError('closed', 'rank 0 closed'));
        this.barrierWaiters.clear();
        return;
      }
      this.abort(new CommError('lost-rank', `rank 0 was lost: rank ${opts.rank}'s control connection to rank 0 dropped (process exited or was killed)`, [0]));
    });
    this.socket.connect(opts.hubEndpoint);
    void this.receiveLoop();
  }

  /** Registers with rank 0 and waits until every rank has; throws CommError('refused') with rank 0's reason. */
  register(body: RegisterBody, timeoutMs: number): Promise<WelcomeBody> {
    return withTimeout(
      new Promise<WelcomeBody>((resolve, reject) => {
        this.registerWaiter = { resolve, reject };
        this.sends.push(encodeControl(WireOp.Register, this.opts.rank, body));
      }),
      timeoutMs,
      () =>
        new CommError(
          'timeout',
          this.connected
            ? `rank ${this.opts.rank}: rendezvous timed out after ${secs(timeoutMs)} s: registered with rank 0 at ${this.opts.hubEndpoint}, but not every rank did`
            : `rank ${this.opts.rank}: rendezvous timed out after ${secs(timeoutMs)} s: could not reach rank 0 at ${this.opts.hubEndpoint} (MASTER_ADDR/MASTER_PORT)`,
          [0],
        ),
    );
  }

  /** Tells rank 0 this rank's ring connection is up, and waits until every rank's is. */
  ready(timeoutMs: number): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve, reject) => {
        this.goWaiter = { resolve, reject };
        this.sends.push(encodeControl(WireOp.Ready, this.opts.rank, {}));
      }),
      timeoutMs,
      () => new CommError('timeout', `rank ${this.opts.rank}: rendezvous timed out after ${secs(timeoutMs)} s waiting for the other ranks to connect`),
    );
  }

  /** Arrives at barrier #seq; resolves when rank 0 has seen every rank arrive. No timeout here: the caller owns it. */
  barrier(seq: number, name: string): Promise<void> {
    if (this.abortError) return Promise.reject(this.abortError);
    return new Promise<void>((resolve, reject) => {
      this.barrierWaiters.set(seq, { resolve, reject });
      this.sends.push(encodeControl(WireOp.BarrierArrive, this.opts.rank, { name }, { seq, name }));
    });
  }

  /** Cancels a pending barrier wait (its collective failed for another reason). */
  forgetBarrier(seq: number): void {
    this.barrierWaiters.delete(seq);
  }

  /** Asks rank 0 what every rank is doing; null where a rank did not answer, or everything null if rank 0 did not. */
  async queryStatus(timeoutMs: number): Promise<(RankStatus | null)[]> {
    const none = () => new Array<RankStatus | null>(this.opts.worldSize).fill(null);
    if (this.abortError) return none();
    const queryId = this.nextQueryId++;
    try {
      return await withTimeout(
        new Promise<(RankStatus | null)[]>((resolve, reject) => {
          this.queryWaiters.set(queryId, { resolve, reject });
          this.sends.push(encodeControl(WireOp.StatusQuery, this.opts.rank, { queryId }));
        }),
        timeoutMs,
        () => new CommError('timeout', 'status query timed out'),
      );
    } catch {
      return none();
    } finally {
      this.queryWaiters.delete(queryId);
    }
  }

  /** Tells rank 0 that `rank` is gone, so it can stop every other rank at once. */
  reportLost(rank: number, reason: string): void {
    if (!this.closing) this.sends.push(encodeControl(WireOp.Lost, this.opts.rank, { rank, reason }));
  }

  /** Tells rank 0 that this rank failed with `error`, so it can stop the others with the same message. */
  reportFailure(error: CommError): void {
    if (!this.closing && this.abortError === null) this.sends.push(encodeControl(WireOp.Abort, this.opts.rank, { error: error.toData() }));
  }

  /** From here on a dropped connection is expected, not a lost rank. */
  beginClose(): void {
    this.closing = true;
  }

  close(lingerMs = 1000): void {
    this.closing = true;
    this.socket.linger = lingerMs;
    // The event observer has a socket of its own; left open, it aborts the process at thread exit.
    this.socket.events.close();
    this.socket.close();
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.socket) this.handle(frames);
    } catch (err) {
      if (!this.closing) this.warn(`control receive failed: ${(err as Error).message}`);
    }
  }

  private handle(frames: Buffer[]): void {
    let msg: ControlMessage;
    try {
      if (frames.length !== 2) throw new Error(`${frames.length} frames`);
      msg = decodeControl(frames[0], frames[1]);
      if (msg.header.sender !== 0) throw new Error(`control message claims to come from rank ${msg.header.sender}`);
      this.dispatch(msg);
    } catch (err) {
      this.warn(`dropped a control message from rank 0: ${(err as Error).message}`);
    }
  }

  private dispatch(msg: ControlMessage): void {
    const body = msg.body;
    switch (msg.header.op) {
      case WireOp.Welcome: {
        const endpoints = field(body, 'endpoints', (v): v is string[] => Array.isArray(v) && v.every(isString), 'a list of endpoints');
        const nonce = field(body, 'nonce', isString, 'a string');
        if (endpoints.length !== this.opts.worldSize) throw new Error(`welcome lists ${endpoints.length} ranks`);
        this.registerWaiter?.resolve({ endpoints, nonce });
        this.registerWaiter = null;
        return;
      }
      case WireOp.Refuse: {
        const message = field(body, 'message', isString, 'a string');
        const err = new CommError('refused', message, [this.opts.rank]);
        this.registerWaiter?.reject(err);
        this.registerWaiter = null;
        return;
      }
      case WireOp.Go:
        this.goWaiter?.resolve();
        this.goWaiter = null;
        return;
      case WireOp.BarrierRelease: {
        const waiter = this.barrierWaiters.get(msg.header.seq);
        if (waiter === undefined) return;
        this.barrierWaiters.delete(msg.header.seq);
        const error = (body as { error?: unknown }).error;
        if (error !== undefined && isCommErrorData(error)) waiter.reject(CommError.fromData(error));
        else waiter.resolve();
        return;
      }
      case WireOp.StatusProbe: {
        const probeId = field(body, 'probeId', isInt, 'an integer');
        this.sends.push(encodeControl(WireOp.StatusReply, this.opts.rank, { probeId, status: this.opts.status() }));
        return;
      }
      case WireOp.StatusReport: {
        const queryId = field(body, 'queryId', isInt, 'an integer');
        const ranks = field(body, 'ranks', (v): v is (RankStatus | null)[] => Array.isArray(v) && v.every((s) => s === null || isRankStatus(s)), 'a status list');
        this.queryWaiters.get(queryId)?.resolve(ranks);
        return;
      }
      case WireOp.Abort: {
        const error = field(body, 'error', isCommErrorData, 'an error');
        this.abort(CommError.fromData(error));
        return;
      }
      default:
        throw new Error(`unexpected ${WireOp[msg.header.op]}`);
    }
  }

  private abort(error: CommError): void {
    if (this.abortError !== null || this.closing) return;
    this.abortError = error;
    this.registerWaiter?.reject(error);
    this.goWaiter?.reject(error);
    this.registerWaiter = this.goWaiter = null;
    for (const w of this.barrierWaiters.values()) w.reject(error);
    this.barrierWaiters.clear();
    this.opts.onAbort(error);
  }

  private warn(message: string): void {
    (this.opts.warn ?? console.warn)(`segdist: rank ${this.opts.rank}: ${message}`);
  }
}

function secs(ms: number): string {
  return (ms / 1000).toFixed(1);
}

