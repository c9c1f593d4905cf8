import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtoDecodeError, ProtoReader, ProtoWriter, WireType } from '../src/tensorboard/protobuf';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('varint encodings match the protobuf spec', () => {
  assert.equal(hex(new ProtoWriter().varint(1, 1).finish()), '0801');
  assert.equal(hex(new ProtoWriter().varint(1, 150).finish()), '089601');
  assert.equal(hex(new ProtoWriter().varint(2, 300).finish()), '10ac02');
  assert.equal(hex(new ProtoWriter().varint(1, 2 ** 32).finish()), '088080808010');
  // Negative int64: ten bytes of two's complement.
  assert.equal(hex(new ProtoWriter().varint(1, -1).finish()), '08ffffffffffffffffff01');
  // Field numbers above 15 take a two-byte key.
  assert.equal(hex(new ProtoWriter().varint(16, 1).finish()), '800101');
  assert.throws(() => new ProtoWriter().varint(1, 0.5), RangeError);
});

test('fixed-width and length-delimited encodings', () => {
  assert.equal(hex(new ProtoWriter().float(2, 1).finish()), '150000803f');
  assert.equal(hex(new ProtoWriter().double(1, 1).finish()), '09000000000000f03f');
  assert.equal(hex(new ProtoWriter().fixed32(3, 0xdeadbeef).finish()), '1defbeadde');
  assert.equal(hex(new ProtoWriter().string(1, 'testing').finish()), '0a0774657374696e67');
  assert.equal(hex(new ProtoWriter().message(3, (w) => w.varint(1, 150)).finish()), '1a03089601');
});

test('writer/reader round trip of every supported type, with unknown fields skipped', () => {
  const big = new Uint8Array(300).map((_, i) => i & 0xff);
  const w = new ProtoWriter(16)
    .varint(1, 0)
    .varint(2, 2 ** 53 - 1)
    .varint(3, -5)
    .double(4, Math.PI)
    .float(5, 0.1)
    .fixed32(6, 0xffffffff)
    .fixed64(7, 0xfedcba9876543210n)
    .string(8, 'héllo ✓')
    .bytes(9, big)
    .message(10, (m) => m.string(1, 'inner'))
    .varint(11, 2n ** 63n);
  const r = new ProtoReader(w.finish());
  const seen: number[] = [];
  for (let f = r.next(); f; f = r.next()) {
    seen.push(f.field);
    switch (f.field) {
      case 1: assert.equal(f.wire, WireType.Varint); assert.equal(r.int64(), 0); break;
      case 2: assert.equal(r.int64(), 2 ** 53 - 1); break;
      case 3: assert.equal(r.int64(), -5); break;
      case 4: assert.equal(f.wire, WireType.Fixed64); assert.equal(r.double(), Math.PI); break;
      case 5: assert.equal(f.wire, WireType.Fixed32); assert.equal(r.float(), Math.fround(0.1)); break;
      case 6: assert.equal(r.fixed32(), 0xffffffff); break;
      case 7: assert.equal(r.fixed64(), 0xfedcba9876543210n); break;
      case 8: assert.equal(r.string(), 'héllo ✓'); break;
      case 9: assert.deepEqual(Buffer.from(r.bytes()), Buffer.from(big)); break;
      case 10: {
        const inner = new ProtoReader(r.bytes());
        const g = inner.next();
        assert.equal(g?.field, 1);
        assert.equal(inner.string(), 'inner');
        assert.equal(inner.next(), null);
        break;
      }
      case 11: assert.equal(r.varint64(), 2n ** 63n); break;
      default: assert.fail(`field ${f.field}`);
    }
  }
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);

  // skip() gets over every wire type.
  const r2 = new ProtoReader(w.finish());
  let n = 0;
  for (let f = r2.next(); f; f = r2.next()) {
    r2.skip(f.wire);
    n++;
  }
  assert.equal(n, 11);
});

test('reader rejects truncated and malformed input with ProtoDecodeError', () => {
  const full = new ProtoWriter().string(1, 'abcdef').double(2, 1).varint(3, 300).finish();
  const fieldEnds = [8, 17]; // cutting between fields leaves a valid (shorter) message
  for (let cut = 1; cut < full.length; cut++) {
    if (fieldEnds.includes(cut)) continue;
    const r = new ProtoReader(full.subarray(0, cut));
    assert.throws(() => {
      for (let f = r.next(); f; f = r.next()) r.skip(f.wire);
    }, ProtoDecodeError, `cut at ${cut}`);
  }
  // Group wire types (3, 4) are not supported.
  assert.throws(() => new ProtoReader(Uint8Array.of(0x0b)).next(), /wire type 3/);
  // Field number 0 is invalid.
  assert.throws(() => new ProtoReader(Uint8Array.of(0x00, 0x00)).next(), /field number 0/);
  // An int64 outside the safe range is refused rather than silently rounded.
  const r = new ProtoReader(new ProtoWriter().varint(1, 2n ** 60n).finish());
  r.next();
  assert.throws(() => r.int64(), /safe integer/);
});
