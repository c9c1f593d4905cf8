import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c, maskCrc, maskedCrc32c, unmaskCrc } from '../src/tensorboard/crc32c';

/** Bit-at-a-time reference, independent of the tables. */
function crc32cBitwise(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

test('crc32c known vectors (check value and RFC 3720 iSCSI vectors)', () => {
  assert.equal(crc32c(Buffer.from('123456789', 'ascii')), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
  assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

test('slicing-by-8 matches the bitwise reference for every length and alignment up to 80', () => {
  let seed = 12345;
  const data = Uint8Array.from({ length: 96 }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24));
  for (let start = 0; start < 8; start++) {
    for (let len = 0; len <= 80; len++) {
      const slice = data.subarray(start, start + len);
      assert.equal(crc32c(data, 0, start, start + len), crc32cBitwise(slice), `start ${start} len ${len}`);
      assert.equal(crc32c(slice), crc32cBitwise(slice));
    }
  }
});

test('crc32c continues across chunks', () => {
  const all = Buffer.from('The quick brown fox jumps over the lazy dog, twice over.');
  for (let cut = 0; cut <= all.length; cut++) {
    assert.equal(crc32c(all.subarray(cut), crc32c(all.subarray(0, cut))), crc32c(all));
  }
});

test('TFRecord mask: formula, inverse, and masked helper', () => {
  for (const crc of [0, 1, 0xe3069283, 0xffffffff, 0x80000000, 0x12345678]) {
    const rot = ((crc >>> 15) | (crc << 17)) >>> 0;
    assert.equal(maskCrc(crc), (rot + 0xa282ead8) % 2 ** 32);
    assert.equal(unmaskCrc(maskCrc(crc)), crc);
  }
  const b = Buffer.from('123456789');
  assert.equal(maskedCrc32c(b), maskCrc(0xe3069283));
  // The length header of the golden file's first record: 24 as uint64 LE, stored masked CRC 0x224b7fa3.
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(24n);
  assert.equal(maskedCrc32c(len), 0x224b7fa3);
});
