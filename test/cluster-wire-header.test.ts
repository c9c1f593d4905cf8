import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeHeader,
  encodeHeader,
  expectHeader,
  hashName,
  WIRE_HEADER_BYTES,
  WireDtype,
  WireFormatError,
  WireMismatchError,
  WireOp,
  type WireHeader,
} from '../src/cluster/wire-header';

const h: WireHeader = {
  op: WireOp.AllreduceSum,
  dtype: WireDtype.Float32,
  sender: 3,
  seq: 42,
  nameHash: hashName('grad.bucket0'),
  step: 5,
  chunk: 17,
  byteLength: 4096,
  totalBytes: 100_000_000,
};

test('a header survives encode and decode', () => {
  const b = encodeHeader(h);
  assert.equal(b.byteLength, WIRE_HEADER_BYTES);
  assert.deepEqual(decodeHeader(b, 4096), h);
});

test('malformed headers are rejected with a WireFormatError', () => {
  const good = encodeHeader(h);
  const bad = (mutate: (b: Buffer) => void, payload = 4096) => {
    const b = Buffer.from(good);
    mutate(b);
    return () => decodeHeader(b, payload);
  };
  assert.throws(() => decodeHeader(good.subarray(0, 39), 4096), WireFormatError);
  assert.throws(() => decodeHeader(Buffer.alloc(41), 4096), WireFormatError);
  assert.throws(bad((b) => b.writeUInt32LE(0xdeadbeef, 0)), /bad magic/);
  assert.throws(bad((b) => b.writeUInt8(9, 4)), /protocol version 9/);
  assert.throws(bad((b) => b.writeUInt8(200, 5)), /unknown op/);
  assert.throws(bad((b) => b.writeUInt8(7, 6)), /unknown dtype/);
  assert.throws(bad((b) => b.writeUInt8(1, 7)), /reserved flags/);
  assert.throws(bad(() => undefined, 4095), /announces 4096 payload bytes/);
  assert.throws(bad((b) => b.writeUInt32LE(4094, 28), 4094), /whole number of Float32/);
  assert.throws(bad((b) => b.writeDoubleLE(1.5, 32)), /total byte count/);
  assert.throws(bad((b) => b.writeDoubleLE(-4, 32)), /total byte count/);
  // Random bytes of the right length are not a header either.
  for (let i = 0; i < 100; i++) {
    const junk = Buffer.from(Array.from({ length: 40 }, (_, k) => (i * 131 + k * 17) & 0xff));
    assert.throws(() => decodeHeader(junk, 0), WireFormatError);
  }
});

test('a message of another collective is named in the mismatch error', () => {
  const ctx = { rank: 2, name: 'grad.bucket0', kind: 'allreduce', knownNames: new Map([[hashName('bn1.mean'), 'bn1.mean']]) };
  const want = { op: WireOp.AllreduceSum, dtype: WireDtype.Float32, sender: 3, seq: 42, nameHash: hashName('grad.bucket0'), totalBytes: 100_000_000 };
  expectHeader(h, want, ctx);
  const cases: [Partial<WireHeader>, RegExp][] = [
    [{ nameHash: hashName('bn1.mean') }, /belongs to collective 'bn1.mean', not 'grad.bucket0'/],
    [{ nameHash: hashName('other') }, /belongs to collective #[0-9a-f]{8}/],
    [{ seq: 41 }, /sequence number is 41, expected 42/],
    [{ totalBytes: 400 }, /tensor is 400 bytes, this rank's is 100000000 bytes/],
    [{ op: WireOp.AllreduceMean }, /AllreduceMean message, expected AllreduceSum/],
    [{ dtype: WireDtype.Json }, /dtype is Json/],
  ];
  for (const [change, pattern] of cases) {
    assert.throws(
      () => expectHeader({ ...h, ...change }, want, ctx),
      (err: unknown) => {
        assert.ok(err instanceof WireMismatchError);
        assert.match(err.message, /allreduce 'grad.bucket0' #42 on rank 2: rejected a message from rank 3/);
        assert.match(err.message, pattern);
        assert.equal(err.peer, 3);
        return true;
      },
    );
  }
  assert.throws(() => expectHeader(h, { ...want, step: 4 }, ctx), /step 5, expected step 4/);
  assert.throws(() => expectHeader(h, { ...want, byteLength: 8 }, ctx), /carries 4096 bytes, expected 8/);
});

test('name hashes are stable FNV-1a', () => {
  assert.equal(hashName(''), 0x811c9dc5);
  assert.equal(hashName('a'), 0xe40c292c);
  assert.notEqual(hashName('grad.bucket0'), hashName('grad.bucket1'));
});
