// Rank 0's rendezvous: a ZeroMQ ROUTER on MASTER_ADDR:MASTER_PORT. Every rank (rank 0 included, through
// the same ControlClient code path) registers its rank, world size, job token and data endpoint; once
// all have, each learns every rank's data endpoint and a per-job nonce, connects to its ring neighbour,
// and reports ready; when all are ready, all are released together.
//
// After that the same socket stays up as the job's control hub, because one place that sees every rank
// is what turns "my neighbour is silent" into "rank 3 is lost" or "ranks 2 and 5 never arrived":
//   - barriers (each rank arrives, all are released together);
//   - status probes (a rank whose wait timed out asks; the hub asks everyone what they are doing);
//   - lost-rank reports, fanned out to every rank as an abort so that no one waits out a timeout.
//
// Anything that is not a well-formed message from a registered rank is dropped: the port is reachable by
// whatever can reach the host, and a port scanner must not be able to take the job down.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as zmq from 'zeromq';
import { CommError, type CommErrorData } from './comm-error';
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
} from './control-message';
import { isIpv6, tcpEndpoint } from './host-address';
import { SendQueue } from './send-queue';
import { WireOp } from './wire-header';

export interface RendezvousServerOptions {
  worldSize: number;
  token: string;
  /** IP address to listen on (MASTER_ADDR, resolved). */
  bindIp: string;
  port: number;
  /** Every rank must use the same sub-chunk size: the receivers compute message sizes from it. */
  subChunkBytes: number;
  /** Every rank must speak the same data plane (data-transport.ts). */
  dataPlane: string;
  /** How long to wait for all ranks to register and connect. */
  timeoutMs: number;
  /** How long a status probe waits for answers. */
  probeMs: number;
  /** Where to report dropped messages; console.warn by default. */
  warn?: (message: string) => void;
}

interface Registration {
  rank: number;
  id: Buffer;
  dataEndpoint: string;
  host: string;
  pid: number;
}

interface Probe {
  queryId: number;
  asker: number;
  replies: (RankStatus | null)[];
  waiting: number;
  timer: NodeJS.Timeout;
}

type Phase = 'registering' | 'connecting' | 'running' | 'failed' | 'closed';

export class RendezvousServer {
  readonly endpoint: string;
  /** Resolves when every rank has registered and connected; rejects when rendezvous fails. */
  readonly formed: Promise<void>;

  private phase: Phase = 'registering';
  private readonly byRank = new Map<number, Registration>();
  private readonly rankById = new Map<string, number>();
  private readonly ready = new Set<number>();
  private readonly barriers = new Map<number, Map<number, string>>();
  private readonly probes = new Map<number, Probe>();
  private nextProbeId = 1;
  private readonly nonce = randomBytes(16).toString('hex');
  private readonly tokenDigest: Buffer;
  private readonly sends: SendQueue;
  private readonly deadline: NodeJS.Timeout;
  private resolveFormed!: () => void;
  private rejectFormed!: (err: CommError) => void;
  private dropped = 0;
  private aborted = false;

  private constructor(
    private readonly socket: zmq.Router,
    private readonly opts: RendezvousServerOptions,
  ) {
    this.endpoint = socket.lastEndpoint ?? tcpEndpoint(opts.bindIp, opts.port);
    this.tokenDigest = digest(opts.token);
    this.sends = new SendQueue(socket, (err) => this.warn(`rendezvous: send failed: ${err.message}`));
    this.formed = new Promise((resolve, reject) => {
      this.resolveFormed = resolve;
      this.rejectFormed = reject;
    });
    this.formed.catch(() => undefined); // observed by the caller; never an unhandled rejection here
    this.deadline = setTimeout(() => this.rendezvousTimedOut(), opts.timeoutMs);
    void this.receiveLoop();
  }

  /** Binds the rendezvous port; fails with a message naming MASTER_ADDR / MASTER_PORT when it cannot. */
  static async start(opts: RendezvousServerOptions): Promise<RendezvousServer> {
    const socket = new zmq.Router({
      linger: 1000, // let the last release/abort messages out when the job closes
      maxMessageSize: 1 << 20,
      sendHighWaterMark: 0,
      sendTimeout: opts.timeoutMs,
      ipv6: isIpv6(opts.bindIp),
    });
    const endpoint = tcpEndpoint(opts.bindIp, opts.port);
    try {
      await socket.bind(endpoint);
    } catch (err) {
      socket.close();
      const why = err instanceof Error ? err.message : String(err);
      throw new CommError(
        'usage',
        `rank 0 could not listen for the rendezvous on ${endpoint} (MASTER_ADDR=${opts.bindIp}, MASTER_PORT=${opts.port}): ${why}`,
      );
    }
    return new RendezvousServer(socket, opts);
  }

  close(lingerMs = 1000): void {
    if (this.phase === 'closed') return;
    this.socket.linger = lingerMs;
    if (this.phase !== 'running' && this.phase !== 'failed') this.fail(new CommError('closed', 'rendezvous closed before the job formed'));
    this.phase = 'closed';
    clearTimeout(this.deadline);
    for (const p of this.probes.values()) clearTimeout(p.timer);
    this.probes.clear();
    this.socket.close();
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        if (this.phase === 'closed') break;
        this.handle(frames);
      }
    } catch (err) {
      if (this.phase !== 'closed') this.warn(`rendezvous: receive failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private handle(frames: Buffer[]): void {
    if (frames.length !== 3) return this.drop(`${frames.length} frames`);
    const [id, header, payload] = frames;
    let msg: ControlMessage;
    try {
      msg = decodeControl(header, payload);
    } catch (err) {
      return this.drop((err as Error).message);
    }
    const op = msg.header.op;
    try {
      if (op === WireOp.Register) return this.onRegister(id, msg);
      const rank = this.rankById.get(id.toString('hex'));
      if (rank === undefined || msg.header.sender !== rank) return this.drop(`${WireOp[op]} from an unregistered peer`);
      switch (op) {
        case WireOp.Ready:
          return this.onReady(rank);
        case WireOp.BarrierArrive:
          return this.onBarrierArrive(rank, msg.header.seq, field(msg.body, 'name', isString, 'a string'));
        case WireOp.StatusQuery:
          return this.onStatusQuery(rank, field(msg.body, 'queryId', isInt, 'an integer'));
        case WireOp.StatusReply:
          return this.onStatusReply(rank, field(msg.body, 'probeId', isInt, 'an integer'), msg.body);
        case WireOp.Lost:
          return this.onLost(rank, field(msg.body, 'rank', isInt, 'an integer'), field(msg.body, 'reason', isString, 'a string'));
        case WireOp.Abort:
          return this.onRankFailed(rank, field(msg.body, 'error', isCommErrorData, 'an error'));
        default:
          return this.drop(`unexpected ${WireOp[op]}`);
      }
    } catch (err) {
      return this.drop((err as Error).message);
    }
  }

  private onRegister(id: Buffer, msg: ControlMessage): void {
    const body = msg.body;
    const rank = field(body, 'rank', isInt, 'an integer');
    const worldSize = field(body, 'worldSize', isInt, 'an integer');
    const token = field(body, 'token', isString, 'a string');
    const dataEndpoint = field(body, 'dataEndpoint', isString, 'a string');
    const host = field(body, 'host', isString, 'a string');
    const pid = field(body, 'pid', isInt, 'an integer');
    const subChunkBytes = field(body, 'subChunkBytes', isInt, 'an integer');
    const dataPlane = field(body, 'dataPlane', isString, 'a string');
    const n = this.opts.worldSize;

    const refuse = (message: string) => {
      this.warn(`rendezvous: refused ${host} pid ${pid}: ${message}`);
      this.sends.push([id, ...encodeControl(WireOp.Refuse, 0, { message })]);
    };
    // The token first: a peer without it learns nothing else about the job.
    if (!timingSafeEqual(digest(token), this.tokenDigest)) {
      return refuse(`rank ${rank} was refused by rank 0: its SEGDIST_JOB_TOKEN does not match rank 0's`);
    }
    if (worldSize !== n) {
      return refuse(`rank ${rank} was refused by rank 0: it has WORLD_SIZE=${worldSize}, rank 0 has WORLD_SIZE=${n}`);
    }
    if (rank >= n) return refuse(`rank ${rank} was refused by rank 0: RANK must be below WORLD_SIZE=${n}`);
    // Settings every rank must share, before the duplicate check: a misconfigured rank hears why.
    if (subChunkBytes !== this.opts.subChunkBytes) {
      return refuse(
        `rank ${rank} was refused by rank 0: it uses ${subChunkBytes}-byte sub-chunks, rank 0 uses ${this.opts.subChunkBytes} ` +
          '(all ranks must use the same subChunkBytes)',
      );
    }
    if (dataPlane !== this.opts.dataPlane) {
      return refuse(
        `rank ${rank} was refused by rank 0: it uses the '${dataPlane}' data plane, rank 0 uses '${this.opts.dataPlane}' ` +
          '(every rank must use the same: dist.data_plane)',
      );
    }
    const existing = this.byRank.get(rank);
    if (existing !== undefined) {
      return refuse(
        `rank ${rank} was refused by rank 0: rank ${rank} is already registered (pid ${existing.pid} on ${existing.host}); ` +
          'two processes were started with the same RANK',
      );
    }
    if (this.phase !== 'registering') return refuse(`rank ${rank} was refused by rank 0: the job has already formed`);
    if (!dataEndpoint.startsWith('tcp://')) return refuse(`rank ${rank} was refused by rank 0: bad data endpoint ${dataEndpoint}`);

    this.byRank.set(rank, { rank, id, dataEndpoint, host, pid });
    this.rankById.set(id.toString('hex'), rank);
    if (this.byRank.size === n) {
      this.phase = 'connecting';
      const endpoints = Array.from({ length: n }, (_, r) => this.byRank.get(r)!.dataEndpoint);
      this.toAll(WireOp.Welcome, { endpoints, nonce: this.nonce });
    }
  }

  private onReady(rank: number): void {
    if (this.phase !== 'connecting') return;
    this.ready.add(rank);
    if (this.ready.size === this.opts.worldSize) {
      this.phase = 'running';
      clearTimeout(this.deadline);
      this.toAll(WireOp.Go, {});
      this.resolveFormed();
    }
  }

  private onBarrierArrive(rank: number, seq: number, name: string): void {
    let arrived = this.barriers.get(seq);
    if (arrived === undefined) {
      arrived = new Map();
      this.barriers.set(seq, arrived);
    }
    arrived.set(rank, name);
    if (arrived.size < this.opts.worldSize) return;
    this.barriers.delete(seq);
    // All ranks arrived at collective #seq; if they disagree on its name they called collectives in
    // different orders, which must stop the job rather than pair up the wrong operations.
    const names = [...new Set(arrived.values())];
    let error: CommError | undefined;
    if (names.length > 1) {
      const who = names.map((nm) => `'${nm}' on rank(s) ${[...arrived!].filter(([, v]) => v === nm).map(([r]) => r).join(', ')}`);
      error = new CommError('protocol', `barrier #${seq}: ranks disagree on the collective: ${who.join('; ')}`);
    }
    this.toAll(WireOp.BarrierRelease, error ? { error: error.toData() } : {}, { seq, name: names[0] });
  }

  private onStatusQuery(asker: number, queryId: number): void {
    const probeId = this.nextProbeId++;
    const probe: Probe = {
      queryId,
      asker,
      replies: new Array<RankStatus | null>(this.opts.worldSize).fill(null),
      waiting: this.opts.worldSize,
      timer: setTimeout(() => this.finishProbe(probeId), this.opts.probeMs),
    };
    this.probes.set(probeId, probe);
    this.toAll(WireOp.StatusProbe, { probeId });
  }

  private onStatusReply(rank: number, probeId: number, body: unknown): void {
    const probe = this.probes.get(probeId);
    const status = (body as { status?: unknown }).status;
    if (probe === undefined || !isRankStatus(status) || status.rank !== rank || probe.replies[rank] !== null) return;
    probe.replies[rank] = status;
    if (--probe.waiting === 0) this.finishProbe(probeId);
  }

  private finishProbe(probeId: number): void {
    const probe = this.probes.get(probeId);
    if (probe === undefined) return;
    clearTimeout(probe.timer);
    this.probes.delete(probeId);
    this.toRank(probe.asker, WireOp.StatusReport, { queryId: probe.queryId, ranks: probe.replies });
  }

  private onLost(reporter: number, lost: number, reason: string): void {
    if (this.aborted || lost >= this.opts.worldSize) return;
    this.aborted = true;
    const error = new CommError('lost-rank', `rank ${lost} was lost: ${reason} (reported by rank ${reporter})`, [lost]);
    for (const r of this.byRank.keys()) if (r !== lost) this.toRank(r, WireOp.Abort, { error: error.toData() });
  }

  /** A rank hit an error it cannot recover from; stop the others now instead of at their timeouts. */
  private onRankFailed(reporter: number, error: CommErrorData): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const r of this.byRank.keys()) if (r !== reporter) this.toRank(r, WireOp.Abort, { error });
  }

  private rendezvousTimedOut(): void {
    if (this.phase !== 'registering' && this.phase !== 'connecting') return;
    const n = this.opts.worldSize;
    const secs = (this.opts.timeoutMs / 1000).toFixed(1);
    let error: CommError;
    if (this.phase === 'registering') {
      const missing = range(n).filter((r) => !this.byRank.has(r));
      error = new CommError(
        'timeout',
        `rendezvous timed out after ${secs} s: rank(s) ${missing.join(', ')} did not register with rank 0 at ${this.endpoint}`,
        missing,
      );
    } else {
      const missing = range(n).filter((r) => !this.ready.has(r));
      error = new CommError(
        'timeout',
        `rendezvous timed out after ${secs} s: rank(s) ${missing.join(', ')} registered but could not connect to their ring neighbour`,
        missing,
      );
    }
    this.fail(error);
  }

  private fail(error: CommError): void {
    if (this.phase === 'failed' || this.phase === 'closed') return;
    this.phase = 'failed';
    clearTimeout(this.deadline);
    for (const r of this.byRank.keys()) this.toRank(r, WireOp.Abort, { error: error.toData() });
    this.rejectFormed(error);
  }

  private toAll(op: WireOp, body: object, fields?: { seq?: number; name?: string }): void {
    for (const r of this.byRank.keys()) this.toRank(r, op, body, fields);
  }

  private toRank(rank: number, op: WireOp, body: object, fields?: { seq?: number; name?: string }): void {
    const reg = this.byRank.get(rank);
    if (reg !== undefined) this.sends.push([reg.id, ...encodeControl(op, 0, body, fields)]);
  }

  private drop(why: string): void {
    // Counted and reported sparingly: a flood of junk must not flood the log either.
    this.dropped++;
    if (this.dropped <= 3 || this.dropped % 1000 === 0) {
      this.warn(`rendezvous: dropped a message (${why}); ${this.dropped} dropped so far`);
    }
  }

  private warn(message: string): void {
    (this.opts.warn ?? console.warn)(`segdist: ${message}`);
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
