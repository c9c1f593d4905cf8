// The stream data plane on its own, two ranks in one process: messages arrive in order, into the place
// the collective chose or into a buffer of their own (before their collective begins); a stranger cannot
// take a rank's place; bytes that are not a valid message from the authenticated neighbour stop the
// transport with an error naming that rank.

import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import type { CommError } from '../src/cluster/comm-error';
import type { DataTransportOptions } from '../src/cluster/data-transport';
import { StreamTransport } from '../src/cluster/stream-transport';
import { encodeHeader, WireDtype, WireOp, type WireHeader } from '../src/cluster/wire-header';

interface Pair {
  t: [StreamTransport, StreamTransport];
  fatal: [CommError[], CommError[]];
  warnings: string[];
  close(): void;
}

async function pair(): Promise<Pair> {
  const fatal: [CommError[], CommError[]] = [[], []];
  const warnings: string[] = [];
  const opts = (rank: number): DataTransportOptions => ({
    rank,
    worldSize: 2,
    bindIp: '127.0.0.1',
    subChunkBytes: 64 * 1024,
    sendTimeoutMs: 5000,
    minorGcEveryBytes: 0,
    onLost: (r, reason) => fatal[rank].push({ message: `lost ${r}: ${reason}` } as CommError),
    onFatal: (e) => fatal[rank].push(e),
    warn: (m) => warnings.push(m),
  });
  const t: [StreamTransport, StreamTransport] = [await StreamTransport.bind(opts(0)), await StreamTransport.bind(opts(1))];
  const endpoints = t.map((x) => x.endpoint);
  for (const x of t) x.connect(endpoints, 'nonce42');
  await Promise.all(t.map((x) => x.waitConnected()));
  return {
    t,
    fatal,
    warnings,
    close: () => {
      for (const x of t) x.beginClose();
      for (const x of t) x.close();
    },
  };
}

const header = (seq: number, chunk: number, byteLength: number): WireHeader => ({
  op: WireOp.AllreduceSum, dtype: WireDtype.Float32, sender: 0, seq, nameHash: 7, step: 0, chunk, byteLength, totalBytes: 1 << 20,
});

/** A payload's floats (copied: a Buffer's slice() is a view, and it may not be 4-byte aligned). */
const floats = (payload: Uint8Array) => [...new Float32Array(Uint8Array.prototype.slice.call(payload).buffer)];

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
};

test('messages arrive in order, placed where the collective asks; one of a collective not begun yet waits for it', async () => {
  const p = await pair();
  try {
    const [a, b] = p.t;
    const got: [number, number[], boolean][] = [];
    const target = new Float32Array(new SharedArrayBuffer(16));
    a.send(header(1, 0, 8), new Uint8Array(new Float32Array([1, 2]).buffer));
    a.send(header(1, 1, 8), new Uint8Array(new Float32Array([3, 4]).buffer));
    // Rank 0 is ahead: collective #2's message is on the wire before #1 has even begun on rank 1.
    a.send(header(2, 0, 8), new Uint8Array(new Float32Array([5, 6]).buffer));
    await new Promise((r) => setTimeout(r, 50));
    b.begin(1, (h, payload, placed) => got.push([h.seq, floats(payload), placed]), (h) =>
      h.chunk === 0 ? new Uint8Array(target.buffer, 0, h.byteLength) : undefined,
    );
    await until(() => got.length === 2);
    assert.deepEqual(got, [[1, [1, 2], true], [1, [3, 4], false]]);
    assert.deepEqual([...target.subarray(0, 2)], [1, 2]);
    b.end(1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.length, 2, 'a message of #2 was delivered before #2 began');
    // #2's payload waited in the kernel; it lands where #2 places it.
    b.begin(2, (h, payload, placed) => got.push([h.seq, floats(payload), placed]), () => new Uint8Array(target.buffer, 8, 8));
    await until(() => got.length === 3);
    assert.deepEqual(got[2], [2, [5, 6], true]);
    assert.deepEqual([...target.subarray(2, 4)], [5, 6]);
    b.end(2);
    // And the stream goes on after the hold.
    a.send(header(3, 0, 8), new Uint8Array(new Float32Array([7, 8]).buffer));
    b.begin(3, (h, payload, placed) => got.push([h.seq, floats(payload), placed]));
    await until(() => got.length === 4);
    assert.deepEqual(got[3], [3, [7, 8], false]);
    await new Promise<void>((resolve) => a.afterSends(resolve));
    assert.deepEqual(p.fatal, [[], []]);
  } finally {
    p.close();
  }
});

test('a stranger at the data port is dropped without disturbing the ring', async () => {
  const p = await pair();
  try {
    const [a, b] = p.t;
    const m = /^tcp:\/\/([\d.]+):(\d+)$/.exec(a.endpoint)!;
    const s: Socket = tcpConnect(Number(m[2]), m[1]);
    s.on('error', () => undefined);
    s.write(encodeHeader(header(1, 0, 8)));
    s.write(Buffer.alloc(70_000, 0xff));
    await new Promise((r) => s.on('close', r));
    await until(() => a.droppedCount === 1);
    const got: number[] = [];
    b.begin(1, (h) => got.push(h.chunk));
    a.send(header(1, 0, 8), new Uint8Array(8));
    await until(() => got.length === 1);
    assert.deepEqual(p.fatal, [[], []]);
    assert.match(p.warnings.join('\n'), /rank 0: dropped a message on the data socket \(from a peer that is not rank 1\)/);
  } finally {
    p.close();
  }
});

for (const [what, bytes, pattern] of [
  ['bytes that are not a header', Buffer.alloc(40, 0xab), /rank 1 received a malformed message from rank 0: /],
  ['a payload larger than a sub-chunk', encodeHeader({ ...header(1, 0, 128 * 1024), totalBytes: 1 << 20 }), /payload of 131072 bytes, more than the 65536-byte sub-chunks/],
  ['a control message on the data connection', encodeHeader({ ...header(0, 0, 0), op: WireOp.Register, dtype: WireDtype.Json }), /control op Register on the data socket/],
] as const) {
  test(`${what} from the authenticated neighbour stop the transport, naming the sender`, async () => {
    const p = await pair();
    try {
      const [a] = p.t;
      // Write straight to the connection, as a rank whose framing went wrong would.
      (a as unknown as { outSock: Socket }).outSock.write(bytes);
      await until(() => p.fatal[1].length > 0);
      const err = p.fatal[1][0];
      assert.equal(err.code, 'protocol');
      assert.deepEqual(err.ranks, [0]);
      assert.match(err.message, /rank 1 received a malformed message from rank 0: /);
      assert.match(err.message, pattern);
    } finally {
      p.close();
    }
  });
}

test('a message for a collective that already ended is a protocol error naming the sender and the collective', async () => {
  const p = await pair();
  try {
    const [a, b] = p.t;
    b.begin(3, () => undefined);
    b.end(3);
    a.send(header(2, 0, 8), new Uint8Array(8));
    await until(() => p.fatal[1].length > 0);
    const err = p.fatal[1][0];
    assert.equal(err.code, 'protocol');
    assert.deepEqual(err.ranks, [0]);
    assert.match(err.message, /rank 1 received a AllreduceSum message for collective #2 from rank 0, but that collective already ended here \(latest #3\)/);
  } finally {
    p.close();
  }
});
