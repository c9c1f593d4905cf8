// What the ring collectives need from a data plane: ordered, authenticated messages to the next rank
// and from the previous one, each a header (wire-header.ts) and a payload, routed by collective
// sequence number. Two implementations:
//   stream-transport.ts  plain TCP connections with our own framing; the kernel writes each payload
//                        straight into the slot (or its scratch area), and sends read straight from it.
//                        The default: ~40% less CPU per byte than ZeroMQ on loopback (docs/benchmarks.md).
//   ring-transport.ts    ZeroMQ DEALER/ROUTER; each payload arrives in a buffer of ZeroMQ's and is copied.
// On the stream plane, large allreduces may instead run in C on the same sockets (native-ring.ts), with
// the same messages on the wire.
// Both send payloads without copying: a payload view must stay unchanged until it has left (the rules
// for that are in ring-collectives.ts).

import type { CommError } from './comm-error';
import type { WireHeader } from './wire-header';

export const DATA_PLANES = ['stream', 'zeromq'] as const;
export type DataPlane = (typeof DATA_PLANES)[number];

/**
 * A message of the running collective arrived. `placed`: the payload is the view that the handler's
 * `place` returned, already filled in by the transport; otherwise it is a buffer of the transport's,
 * which the handler may keep or forward (nothing else will touch it).
 */
export type RingHandler = (header: WireHeader, payload: Uint8Array, placed: boolean) => void;

/**
 * Where the payload of an arriving message of the running collective should land: a view of exactly
 * `header.byteLength` bytes that nothing reads or writes until the message is delivered, or undefined
 * to have it in a buffer of the transport's. Must not throw: checking the header is the handler's job.
 */
export type PlaceFn = (header: WireHeader) => Uint8Array | undefined;

export interface DataTransportOptions {
  rank: number;
  worldSize: number;
  /** This host's address to bind (loopback for single-host jobs). */
  bindIp: string;
  /** Largest payload a message may carry. */
  subChunkBytes: number;
  /** A send that cannot be queued for this long fails the job (ZeroMQ only; the stream plane always queues). */
  sendTimeoutMs: number;
  /** Run a minor GC every this many bytes received into buffers of the transport's; 0: never. */
  minorGcEveryBytes: number;
  /** A neighbour's connection dropped after it was up. */
  onLost: (rank: number, reason: string) => void;
  /** The transport cannot go on (a neighbour sent something unacceptable, or a send failed). */
  onFatal: (error: CommError) => void;
  warn?: (message: string) => void;
}

export interface DataTransport {
  /** This rank's data endpoint, tcp://ip:port, handed to the other ranks at rendezvous. */
  readonly endpoint: string;
  /**
   * Whether afterSends() really waits until every payload queued so far has been handed to the kernel
   * (the stream plane). Without it (ZeroMQ) a sent view is known to be free again only by causality:
   * the rules in ring-collectives.ts.
   */
  readonly confirmsSends: boolean;
  readonly prev: number;
  readonly next: number;
  /** Messages dropped because they did not come from a ring neighbour. */
  readonly droppedCount: number;
  /** Connects the ring: `endpoints` by rank, `nonce` authenticates the ring's connections. */
  connect(endpoints: readonly string[], nonce: string): void;
  /** Resolves once the ring's connections of this rank are up and authenticated. */
  waitConnected(): Promise<void>;
  /** Why waitConnected has not resolved yet, naming the rank to blame (for a rendezvous timeout). */
  connectFailure(): CommError;
  /** Queues [header, payload] to the next rank. The payload is sent without copying: keep it unchanged until delivered. */
  send(header: WireHeader, payload: Uint8Array): void;
  /** Calls `done` once every payload queued so far has left (at once where sends are not confirmed). */
  afterSends(done: () => void): void;
  /** Starts delivering messages of collective #seq (including any that arrived early) to `handler`. */
  begin(seq: number, handler: RingHandler, place?: PlaceFn): void;
  /** Stops delivering messages of collective #seq; later messages for it are protocol errors. */
  end(seq: number): void;
  /** From here on a dropped connection is expected, not a lost rank. */
  beginClose(): void;
  close(): void;
}
