// TFRecord reader robustness: truncation at any byte is a clean stop, any flipped byte is a CRC
// error at the right offset.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readEventFile } from '../src/tensorboard/read-events';
import { RecordCrcError, readRecords } from '../src/tensorboard/record-reader';
import { encodeRecord } from '../src/tensorboard/record-writer';
import { encodeEvent, textEvent } from '../src/tensorboard/event';

const GOLDEN = path.resolve(__dirname, '../../test/fixtures/tensorboard/events.out.tfevents.1622543341.janoshs-mbp.lan.86862.0');
const golden = fs.readFileSync(GOLDEN);
const full = readRecords(golden);
const ends = full.offsets.map((_, i) => full.offsets[i + 1] ?? golden.length);

test('encodeRecord framing: uint64 LE length, masked CRCs, empty record', () => {
  const rec = encodeRecord(Buffer.from('abc'));
  assert.equal(rec.length, 12 + 3 + 4);
  assert.equal(rec.readBigUInt64LE(0), 3n);
  assert.deepEqual(readRecords(rec).records.map((r) => Buffer.from(r).toString()), ['abc']);
  const empty = encodeRecord(new Uint8Array(0));
  assert.equal(empty.length, 16);
  const res = readRecords(Buffer.concat([empty, rec, empty]));
  assert.deepEqual(res.records.map((r) => r.length), [0, 3, 0]);
  assert.equal(readRecords(new Uint8Array(0)).records.length, 0);
  assert.equal(readRecords(new Uint8Array(0)).truncated, false);
});

test('golden cut at every byte offset: complete records before the cut, truncated flag, no throw', () => {
  for (let cut = 0; cut <= golden.length; cut++) {
    const res = readRecords(golden.subarray(0, cut));
    const complete = ends.filter((e) => e <= cut).length;
    assert.equal(res.records.length, complete, `cut ${cut}`);
    const atBoundary = cut === 0 || ends.includes(cut);
    assert.equal(res.truncated, !atBoundary, `cut ${cut}`);
    assert.equal(res.validBytes, complete === 0 ? 0 : ends[complete - 1]);
    for (let i = 0; i < complete; i++) assert.deepEqual(res.records[i], full.records[i]);
  }
});

test('readEventFile on a file cut at every offset of a large last record (text event) yields the events before it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-tb-trunc-'));
  try {
    const last = encodeRecord(encodeEvent(textEvent('notes', 'x'.repeat(200) + ' ✓', 7, 1700000000.5)));
    const file = path.join(dir, 'events.out.tfevents.1.host.1.0');
    const whole = Buffer.concat([golden, last]);
    for (let cut = golden.length; cut < whole.length; cut++) {
      fs.writeFileSync(file, whole.subarray(0, cut));
      const { events, truncated } = readEventFile(file);
      assert.equal(events.length, 101, `cut ${cut}`);
      assert.equal(truncated, cut !== golden.length, `cut ${cut}`);
      assert.equal(events[100]!.step, 495);
    }
    fs.writeFileSync(file, whole);
    const { events, truncated } = readEventFile(file);
    assert.equal(truncated, false);
    assert.equal(events.length, 102);
    assert.equal(events[101]!.step, 7);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a flipped byte anywhere in the golden is a CRC error with its offset', () => {
  const buf = Buffer.from(golden);
  for (let at = 0; at < buf.length; at++) {
    const rec = ends.findIndex((e) => e > at);
    const start = full.offsets[rec]!;
    const dataCrcAt = ends[rec]! - 4;
    const part = at < start + 12 ? 'length' : 'data';
    buf[at]! ^= 0x20;
    try {
      assert.throws(
        () => readRecords(buf),
        (err: unknown) => {
          assert.ok(err instanceof RecordCrcError, String(err));
          assert.equal(err.part, part, `flip at ${at}`);
          assert.equal(err.offset, part === 'length' ? start + 8 : dataCrcAt, `flip at ${at}`);
          assert.equal(err.recordOffset, start);
          assert.equal(err.recordIndex, rec);
          assert.match(err.message, new RegExp(`byte offset ${err.offset}\\b`));
          return true;
        },
      );
      // 'stop' mode keeps the records before the bad one.
      const res = readRecords(buf, { onCrcError: 'stop' });
      assert.equal(res.records.length, rec);
      assert.equal(res.error?.offset, part === 'length' ? start + 8 : dataCrcAt);
      assert.equal(res.truncated, false);
    } finally {
      buf[at]! ^= 0x20;
    }
  }
});

test('readEventFile reports the file and offset of a bad CRC', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-tb-crc-'));
  try {
    const file = path.join(dir, 'events.out.tfevents.1.host.1.0');
    const buf = Buffer.from(golden);
    const at = full.offsets[50]! + 20; // inside record 50's data
    buf[at]! ^= 1;
    fs.writeFileSync(file, buf);
    assert.throws(() => readEventFile(file), (err: unknown) => {
      assert.ok(err instanceof RecordCrcError);
      assert.equal(err.offset, ends[50]! - 4);
      assert.ok(err.message.startsWith(file), err.message);
      return true;
    });
    const stopped = readEventFile(file, { onCrcError: 'stop' });
    assert.equal(stopped.events.length, 50);
    assert.equal(stopped.error?.recordIndex, 50);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
