// The default data plane: one plain TCP connection per ring edge, carrying [40-byte header][payload]
// back to back, with the kernel reading each payload straight into the memory where the collective
// wants it (the slot's scratch area for a partial sum, the slot itself for a finished chunk) and
// sending straight from the slot. Against ZeroMQ that saves a memory copy of every received byte, a
// malloc/free and a GC-tracked external buffer per message, and the handoffs to ZeroMQ's I/O thread:
// measured at ~40% less CPU per allreduce on loopback, which is what bounds the allreduce on a machine
// with as many ranks as cores (docs/benchmarks.md).
//
// Sends are confirmed: a collective completes only once its payloads have been handed to the kernel,
// so whatever it sent from the slot may change as soon as it returns (no reliance on the causality
// rules that the ZeroMQ plane needs, ring-collectives.ts).
//
// Who connects to whom: node:net can read into memory of our choosing (the `onread` option) only on
// sockets it connects itself, so data flows from the listening side to the connecting side. Rank r
// listens on its data endpoint; rank r+1 connects to it and receives rank r's messages on that
// connection; rank r sends to rank r+1 on the connection it accepted.
//
// Authentication: the connecting rank opens with a hello, `${nonce}:${rank}` with the nonce rank 0
// handed out at rendezvous; the listener checks that it is its next rank (constant-time compare) and
// only then answers with its own hello, which the connecting rank checks in turn. Anything else that
// connects (a scanner, a stale process, garbage) is dropped and disconnected before a byte of it is
// parsed as data, and learns nothing. Messages from the authenticated neighbour are decoded and checked;
// a malformed one is a protocol error that stops the job, because it means the two ranks disagree.
//
// Routing by collective sequence number: a message for a collective that has not begun here (the
// previous rank is ahead) is held: its header is read, its payload left in the kernel and the socket
// paused until begin() of that collective, which then places it like any other (everything this rank
// still needs of the running collective came before it on the connection, so the hold cannot stall
// it). Only payload-less messages wait in a stash. A message for a collective that already ended is
// an error.

import { timingSafeEqual } from 'node:crypto';
import * as net from 'node:net';
import { CollectiveInbox } from './collective-inbox';
import { CommError } from './comm-error';
import type { DataTransport, DataTransportOptions, PlaceFn, RingHandler } from './data-transport';
import { isIpv6, tcpEndpoint } from './host-address';
import { MemoryReclaimer } from './memory-reclaimer';
import { decodeHeader, encodeHeader, WIRE_HEADER_BYTES, WireOp, type WireHeader } from './wire-header';

const HELLO_BYTES = 64;
const HELLO_MAGIC = 0x48444753; // 'SGDH' read as a little-endian u32
const HELLO_VERSION = 1;
/** A connection that has not said who it is by then is dropped. */
const HELLO_TIMEOUT_MS = 10_000;
const RECONNECT_MS = 200;

function encodeHello(rank: number, id: string): Buffer {
  const idBytes = Buffer.from(id, 'utf8');
  if (idBytes.length > HELLO_BYTES - 16) throw new CommError('usage', `data-plane identity '${id}' is too long`);
  const b = Buffer.alloc(HELLO_BYTES);
  b.writeUInt32LE(HELLO_MAGIC, 0);
  b.writeUInt8(HELLO_VERSION, 4);
  b.writeUInt32LE(rank, 8);
  b.writeUInt32LE(idBytes.length, 12);
  idBytes.copy(b, 16);
  return b;
}

/** Whether `hello` is rank `rank` introducing itself as `id`. */
function helloMatches(hello: Buffer, rank: number, id: string): boolean {
  const want = encodeHello(rank, id);
  return hello.length === HELLO_BYTES && timingSafeEqual(hello, want);
}

/** The socket's file descriptor (POSIX), or -1. */
function socketFd(s: net.Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^tcp:\/\/(?:\[([^\]]+)\]|([^:/]+)):(\d+)$/.exec(endpoint);
  if (!m) throw new CommError('usage', `bad data endpoint ${endpoint}`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

/** Reads the stream from the previous rank: headers, then each payload into the place chosen for it. */
interface Incoming {
  header: WireHeader | null;
  headerBuf: Buffer;
  /** Bytes of the current header or payload read so far. */
  got: number;
  /** Where the current payload goes. */
  dest: Uint8Array | null;
  placed: boolean;
}

export class StreamTransport implements DataTransport {
  readonly endpoint: string;
  /** A write's callback says when its bytes have been handed to the kernel, so afterSends() is exact. */
  readonly confirmsSends = true;
  readonly prev: number;
  readonly next: number;

  private nonce: string | null = null;
  private prevEndpoint = '';
  /** The connection we receive on (to the previous rank), once it answered our hello. */
  private inSock: net.Socket | null = null;
  private inUp = false;
  /** The connection we send on (accepted from the next rank), once its hello checked out. */
  private outSock: net.Socket | null = null;
  /** Accepted connections that have not said who they are yet, with the bytes they sent so far. */
  private readonly unverified = new Map<net.Socket, { bytes: Buffer[]; timer: NodeJS.Timeout }>();
  private connectedWaiters: (() => void)[] = [];
  private reconnectTimer: NodeJS.Timeout | null = null;
  private closing = false;
  private readonly inbox: CollectiveInbox;
  /** Where the running collective wants its payloads (set while one runs). */
  private place: PlaceFn | undefined = undefined;
  private dropped = 0;
  private readonly reclaimer: MemoryReclaimer;
  private readonly rx: Incoming = { header: null, headerBuf: Buffer.alloc(WIRE_HEADER_BYTES), got: 0, dest: null, placed: false };
  private readonly helloIn = Buffer.alloc(HELLO_BYTES);
  private helloGot = 0;
  private failed = false;
  /** A header of a collective that has not begun here was read; its payload waits in the kernel. */
  private held = false;
  /** Where node reads the first byte after a hold (see where). */
  private readonly spare = Buffer.alloc(1);
  /** The buffer node was last given to read into (onRead finds the bytes there). */
  private nodeBuffer: Uint8Array = this.spare;
  /** While the native ring (native-ring.ts) has the sockets: its collective and its abort cell. */
  private lease: { seq: number; control: Int32Array } | null = null;
  /** close() came while the sockets were lent: they are closed when they come back (see close). */
  private closedWhileLent = false;
  /** Payload writes not yet handed to the kernel, and who waits for them to be. */
  private unsent = 0;
  private sentWaiters: (() => void)[] = [];

  private constructor(
    private readonly server: net.Server,
    private readonly opts: DataTransportOptions,
  ) {
    const addr = server.address() as net.AddressInfo;
    this.endpoint = tcpEndpoint(opts.bindIp, addr.port);
    this.prev = (opts.rank + opts.worldSize - 1) % opts.worldSize;
    this.next = (opts.rank + 1) % opts.worldSize;
    this.reclaimer = new MemoryReclaimer(opts.minorGcEveryBytes);
    this.inbox = new CollectiveInbox(opts.rank, this.prev, (e) => this.fatal(e));
    server.on('connection', (s) => this.onAccepted(s));
    server.on('error', (err) => {
      if (!this.closing) this.fatal(new CommError('protocol', `rank ${opts.rank}: data socket failed: ${err.message}`));
    });
  }

  /** Listens on an ephemeral port of `bindIp`. */
  static async bind(opts: DataTransportOptions): Promise<StreamTransport> {
    const server = net.createServer({ noDelay: true });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port: 0, host: opts.bindIp, ipv6Only: isIpv6(opts.bindIp) }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      server.close();
      throw new CommError('usage', `rank ${opts.rank} could not bind its data socket on ${opts.bindIp}: ${(err as Error).message}`);
    }
    return new StreamTransport(server, opts);
  }

  get droppedCount(): number {
    return this.dropped;
  }

  connect(endpoints: readonly string[], nonce: string): void {
    this.nonce = nonce;
    this.prevEndpoint = endpoints[this.prev];
    // Hellos that arrived before we knew the nonce can be checked now.
    for (const [s, u] of this.unverified) this.checkHello(s, Buffer.concat(u.bytes));
    this.dial();
  }

  waitConnected(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  connectFailure(): CommError {
    const { rank } = this.opts;
    if (!this.inUp) {
      return new CommError('timeout', `rank ${rank}: could not connect to rank ${this.prev}'s data endpoint ${this.prevEndpoint}`, [this.prev]);
    }
    return new CommError('timeout', `rank ${rank}: rank ${this.next} did not connect to this rank's data endpoint ${this.endpoint}`, [this.next]);
  }

  send(header: WireHeader, payload: Uint8Array): void {
    const s = this.outSock;
    if (s === null || this.failed) return;
    this.unsent++;
    // One writev of header and payload; the payload view is handed to the kernel as it is, and the
    // callback says when it has been (after which its memory may change).
    s.cork();
    if (payload.byteLength > 0) {
      s.write(encodeHeader(header));
      s.write(payload, this.onSent);
    } else {
      s.write(encodeHeader(header), this.onSent);
    }
    s.uncork();
  }

  afterSends(done: () => void): void {
    if (this.unsent === 0) done();
    else this.sentWaiters.push(done);
  }

  private readonly onSent = (err?: Error | null): void => {
    // A failed write means the connection is gone: 'close' reports the lost rank, and the collective
    // waiting here fails with it.
    if (err) return;
    if (--this.unsent === 0 && this.sentWaiters.length > 0) for (const w of this.sentWaiters.splice(0)) w();
  };

  begin(seq: number, handler: RingHandler, place?: PlaceFn): void {
    this.place = place;
    this.inbox.begin(seq, handler);
    // A message of this collective waits in the kernel (onRead): choose where it goes, and read on.
    const h = this.rx.header;
    if (this.held && h !== null && h.seq === seq && this.inbox.handler === handler) {
      this.held = false;
      this.chooseDest(h);
      this.inSock?.resume();
    }
  }

  end(seq: number): void {
    if (this.inbox.isActive(seq)) this.place = undefined;
    // Still lent: the collective failed around the native loop; stop it (the sockets stay with it).
    if (this.lease?.seq === seq) Atomics.store(this.lease.control, 0, 1);
    this.inbox.end(seq);
  }

  /**
   * Lends both sockets to the native ring for collective #seq, which must be the next thing on them:
   * stops reading, and returns their descriptors with the bytes of its first header already read here
   * (a held header, or part of one). Null, lending nothing, where that cannot be done now (not
   * connected, a write still queued, no descriptors on this platform).
   */
  lend(seq: number, control: Int32Array): { inFd: number; outFd: number; pre: Uint8Array } | null {
    const inSock = this.inSock;
    const outSock = this.outSock;
    if (!this.connected || this.failed || this.closing || this.lease !== null || inSock === null || outSock === null) return null;
    if (this.unsent > 0 || outSock.writableLength > 0) return null;
    const rx = this.rx;
    if (rx.dest !== null || (rx.header !== null && rx.header.seq !== seq)) return null;
    const inFd = socketFd(inSock);
    const outFd = socketFd(outSock);
    if (inFd < 0 || outFd < 0) return null;
    const pre = Uint8Array.from(rx.headerBuf.subarray(0, rx.header !== null ? WIRE_HEADER_BYTES : rx.got));
    inSock.pause();
    rx.header = null;
    rx.got = 0;
    this.held = false;
    this.lease = { seq, control };
    return { inFd, outFd, pre };
  }

  /** The native ring is done with the sockets; `resume` (it succeeded): read on from here. */
  giveBack(resume: boolean): void {
    this.lease = null;
    if (this.closedWhileLent) {
      this.inSock?.destroy();
      this.outSock?.destroy();
      return;
    }
    if (resume && !this.failed && !this.closing) this.inSock?.resume();
  }

  /** The native ring saw a neighbour's connection drop: reported as this transport's own 'close' would. */
  reportLost(rank: number): void {
    if (this.closing) return;
    this.opts.onLost(
      rank,
      rank === this.prev
        ? `rank ${this.opts.rank}'s data connection from rank ${this.prev} dropped (process exited or was killed)`
        : `rank ${this.opts.rank}'s data connection to rank ${this.next} dropped (process exited or was killed)`,
    );
  }

  /**
   * A header from the previous rank, if it is one of a data message of this job; otherwise null, and
   * the transport fails naming the rank (the stream cannot be trusted past it).
   */
  decodeData(raw: Buffer): WireHeader | null {
    try {
      const h = decodeHeader(raw, raw.readUInt32LE(28));
      if (h.op < WireOp.AllreduceSum) throw new Error(`control op ${WireOp[h.op]} on the data socket`);
      if (h.byteLength > this.opts.subChunkBytes) throw new Error(`payload of ${h.byteLength} bytes, more than the ${this.opts.subChunkBytes}-byte sub-chunks of this job`);
      return h;
    } catch (err) {
      this.fatal(new CommError('protocol', `rank ${this.opts.rank} received a malformed message from rank ${this.prev}: ${(err as Error).message}`, [this.prev]));
      return null;
    }
  }

  beginClose(): void {
    this.closing = true;
  }

  close(): void {
    this.closing = true;
    this.place = undefined;
    this.inbox.clear();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const [s, u] of this.unverified) {
      clearTimeout(u.timer);
      s.destroy();
    }
    this.unverified.clear();
    if (this.lease !== null) {
      // The native loop may still be in a poll on these descriptors for a few ms after the abort; closing
      // them now could hand their numbers to another file it would then read or write.
      Atomics.store(this.lease.control, 0, 1);
      this.closedWhileLent = true;
    } else {
      this.inSock?.destroy();
      this.outSock?.destroy();
    }
    this.server.close();
  }

  private get connected(): boolean {
    return this.inUp && this.outSock !== null;
  }

  private markConnected(): void {
    if (this.connected) for (const w of this.connectedWaiters.splice(0)) w();
  }

  // --- sending side: connections accepted from the next rank -------------------------------------

  private onAccepted(s: net.Socket): void {
    if (this.closing) {
      s.destroy();
      return;
    }
    s.setNoDelay(true);
    const timer = setTimeout(() => this.reject(s), HELLO_TIMEOUT_MS);
    const state = { bytes: [] as Buffer[], timer };
    this.unverified.set(s, state);
    s.on('error', () => undefined); // reported through 'close'
    s.on('data', (d: Buffer) => {
      const u = this.unverified.get(s);
      if (u === undefined) {
        // The next rank sends nothing after its hello on this connection.
        if (s === this.outSock) this.fatal(new CommError('protocol', `rank ${this.opts.rank}: rank ${this.next} sent data on the wrong connection`, [this.next]));
        return;
      }
      u.bytes.push(d);
      this.checkHello(s, Buffer.concat(u.bytes));
    });
    s.on('close', () => {
      const u = this.unverified.get(s);
      if (u !== undefined) {
        clearTimeout(u.timer);
        this.unverified.delete(s);
        this.drop();
        return;
      }
      if (s === this.outSock && !this.closing) {
        this.reportLost(this.next);
      }
    });
  }

  /** Checks an accepted connection's hello once it has HELLO_BYTES bytes and we know the nonce. */
  private checkHello(s: net.Socket, bytes: Buffer): void {
    if (bytes.length < HELLO_BYTES) return;
    // A hello is exactly HELLO_BYTES, after which the peer waits for ours: anything more is not a rank.
    if (bytes.length > HELLO_BYTES || bytes.readUInt32LE(0) !== HELLO_MAGIC) return this.reject(s);
    if (this.nonce === null) return; // checked again in connect()
    const u = this.unverified.get(s)!;
    clearTimeout(u.timer);
    this.unverified.delete(s);
    if (!helloMatches(bytes, this.next, `${this.nonce}:${this.next}`) || this.outSock !== null) {
      this.reject(s);
      return;
    }
    this.outSock = s;
    s.write(encodeHello(this.opts.rank, `${this.nonce}:${this.opts.rank}`));
    this.markConnected();
  }

  /** Drops and disconnects a connection that is not the next rank's (whatever it sent, or if it sent nothing). */
  private reject(s: net.Socket): void {
    const u = this.unverified.get(s);
    if (u !== undefined) {
      clearTimeout(u.timer);
      this.unverified.delete(s);
    }
    this.drop();
    s.destroy();
  }

  private drop(): void {
    this.dropped++;
    if (this.dropped <= 3 || this.dropped % 1000 === 0) {
      (this.opts.warn ?? console.warn)(
        `segdist: rank ${this.opts.rank}: dropped a message on the data socket (from a peer that is not rank ${this.next}); ${this.dropped} dropped so far`,
      );
    }
  }

  // --- receiving side: our connection to the previous rank ---------------------------------------

  private dial(): void {
    if (this.closing || this.inSock !== null) return;
    const { host, port } = parseEndpoint(this.prevEndpoint);
    const s = net.connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: () => this.readTarget(),
        // false pauses the socket (a message of a collective that has not begun here).
        callback: (n: number) => this.onRead(n),
      },
    });
    this.inSock = s;
    let up = false;
    s.on('connect', () => {
      up = true;
      s.write(encodeHello(this.opts.rank, `${this.nonce}:${this.opts.rank}`));
    });
    s.on('error', () => undefined); // reported through 'close'
    s.on('close', () => {
      if (this.closing) return;
      if (this.inUp) {
        this.reportLost(this.prev);
        return;
      }
      if (this.failed) return;
      // Not up yet (refused, or reset during the hello): try again shortly, as ZeroMQ would.
      this.inSock = null;
      this.helloGot = 0;
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        this.dial();
      }, up ? RECONNECT_MS * 5 : RECONNECT_MS);
    });
  }

  /** Where the next bytes from the previous rank belong, by the state of the stream. */
  private where(): Uint8Array {
    if (!this.inUp) return this.helloIn.subarray(this.helloGot);
    const rx = this.rx;
    if (rx.header === null) return rx.headerBuf.subarray(rx.got);
    // Held (see onRead): no place yet. Node asks for the next buffer before it stops reading and reads
    // the first bytes after the resume into it: one byte, moved to its place in onRead.
    if (rx.dest === null) return this.spare;
    return rx.dest.subarray(rx.got);
  }

  /** Where the next read from the previous rank goes (onread asks before every read). */
  private readTarget(): Uint8Array {
    this.nodeBuffer = this.where();
    return this.nodeBuffer;
  }

  /** Where the payload of `h` goes: the place the running collective chose, or a buffer of its own. */
  private chooseDest(h: WireHeader): void {
    const rx = this.rx;
    rx.placed = false;
    rx.dest = null;
    if (this.inbox.isActive(h.seq) && this.place !== undefined) {
      const view = this.place(h);
      if (view !== undefined && view.byteLength === h.byteLength) {
        rx.dest = view;
        rx.placed = true;
      }
    }
    if (rx.dest === null) {
      rx.dest = Buffer.allocUnsafe(h.byteLength);
      this.reclaimer.noteReceived(h.byteLength);
    }
  }

  /** Returns false to pause the socket. */
  private onRead(n: number): boolean {
    if (n <= 0 || this.failed) return true;
    // The first read after a pause lands in the buffer node was given before it; where the stream's
    // state moved on meanwhile (a held message got its place at begin(), or the native ring had the
    // socket), move the bytes to where they belong.
    const at = this.where();
    const into = this.nodeBuffer;
    if (into.buffer !== at.buffer || into.byteOffset !== at.byteOffset) at.set(into.subarray(0, n));
    if (!this.inUp) {
      this.helloGot += n;
      if (this.helloGot < HELLO_BYTES) return true;
      if (!helloMatches(this.helloIn, this.prev, `${this.nonce}:${this.prev}`)) {
        this.fatal(new CommError('protocol', `rank ${this.opts.rank}: the peer at rank ${this.prev}'s data endpoint ${this.prevEndpoint} is not rank ${this.prev} of this job`, [this.prev]));
        return true;
      }
      this.inUp = true;
      this.markConnected();
      return true;
    }
    const rx = this.rx;
    rx.got += n;
    if (rx.header === null) {
      if (rx.got < WIRE_HEADER_BYTES) return true;
      const h = this.decodeData(rx.headerBuf);
      if (h === null) return true;
      rx.header = h;
      rx.got = 0;
      rx.placed = false;
      rx.dest = null;
      if (h.byteLength > 0 && this.inbox.isAhead(h.seq)) {
        // A collective that has not begun here (the previous rank is ahead): rather than read the
        // payload into a buffer and copy it later, leave it in the kernel until begin(), which places
        // it. Everything this rank still needs of the running collective came before it on this
        // connection, so holding it back cannot stall that collective.
        this.held = true;
        return false;
      }
      this.chooseDest(h);
      if (h.byteLength > 0) return true;
    } else if (rx.got < rx.dest!.byteLength) {
      return true;
    }
    const h = rx.header!;
    const payload = rx.dest!;
    const placed = rx.placed;
    rx.header = null;
    rx.dest = null;
    rx.got = 0;
    this.inbox.deliver(h, payload, placed);
    return true;
  }

  private fatal(error: CommError): void {
    if (this.failed) return;
    this.failed = true;
    this.opts.onFatal(error);
  }
}
