// The golden event file was written by PyTorch's SummaryWriter (see
// test/fixtures/tensorboard/README.md). Reading it proves our reader; re-encoding it byte for byte
// proves our writer produces exactly what PyTorch produces.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { maskedCrc32c } from '../src/tensorboard/crc32c';
import { decodeEvent, encodeEvent, fileVersionEvent, scalarEvent } from '../src/tensorboard/event';
import { readEventFile } from '../src/tensorboard/read-events';
import { readRecords } from '../src/tensorboard/record-reader';
import { encodeRecord } from '../src/tensorboard/record-writer';
import { SummaryWriter } from '../src/tensorboard/summary-writer';

const GOLDEN = path.resolve(__dirname, '../../test/fixtures/tensorboard/events.out.tfevents.1622543341.janoshs-mbp.lan.86862.0');
const golden = fs.readFileSync(GOLDEN);

test('golden: 4912 bytes, 101 records, every CRC valid', () => {
  assert.equal(golden.length, 4912);
  const res = readRecords(golden);
  assert.equal(res.truncated, false);
  assert.equal(res.validBytes, golden.length);
  assert.equal(res.records.length, 101);
  // Check the CRCs explicitly too, not only through the reader.
  for (let i = 0; i < res.records.length; i++) {
    const at = res.offsets[i]!;
    const len = Number(golden.readBigUInt64LE(at));
    assert.equal(golden.readUInt32LE(at + 8), maskedCrc32c(golden, at, at + 8), `length CRC of record ${i}`);
    assert.equal(golden.readUInt32LE(at + 12 + len), maskedCrc32c(golden, at + 12, at + 12 + len), `data CRC of record ${i}`);
  }
});

test('golden: record 0 is file_version brain.Event:2, records 1..100 are strict/foo scalars at steps 0,5,...,495', () => {
  const { events, truncated } = readEventFile(GOLDEN);
  assert.equal(truncated, false);
  assert.equal(events.length, 101);
  const first = events[0]!;
  assert.equal(first.fileVersion, 'brain.Event:2');
  assert.ok(Math.abs(first.wallTime - 1622543341.75773) < 1e-5, `wall_time ${first.wallTime}`);
  assert.equal(first.step, 0);
  assert.equal(first.summary, undefined);
  let prevWall = first.wallTime;
  for (let i = 1; i <= 100; i++) {
    const e = events[i]!;
    assert.equal(e.step, (i - 1) * 5);
    assert.equal(e.fileVersion, undefined);
    assert.equal(e.summary?.length, 1);
    const v = e.summary[0]!;
    assert.equal(v.tag, 'strict/foo');
    assert.ok(v.simpleValue !== undefined && v.simpleValue >= 1 && v.simpleValue < 2, `value ${v.simpleValue}`);
    assert.equal(Math.fround(v.simpleValue), v.simpleValue, 'simple_value is a float32');
    assert.ok(e.wallTime >= prevWall && e.wallTime - prevWall < 1, 'wall times increase by a little');
    prevWall = e.wallTime;
  }
  // proto3 leaves step 0 out: the first scalar record has no field 2 (its Event starts 09 <8 bytes> 2a).
  const rec1 = readRecords(golden).records[1]!;
  assert.equal(rec1[0], 0x09);
  assert.equal(rec1[9], 0x2a);
});

test('golden: our encoding of every record is byte-identical to PyTorch\'s', () => {
  const { records, offsets } = readRecords(golden);
  const rebuilt: Buffer[] = [];
  for (let i = 0; i < records.length; i++) {
    const d = decodeEvent(records[i]!);
    // Build from plain values with the same builders SummaryWriter uses, not by echoing the decode.
    const ev =
      i === 0 ? fileVersionEvent(d.wallTime) : scalarEvent(d.summary![0]!.tag, d.summary![0]!.simpleValue!, d.step, d.wallTime);
    const data = encodeEvent(ev);
    assert.deepEqual(data, Buffer.from(records[i]!), `event ${i}`);
    const framed = encodeRecord(data);
    const end = i + 1 < offsets.length ? offsets[i + 1]! : golden.length;
    assert.deepEqual(framed, golden.subarray(offsets[i]!, end), `framed record ${i}`);
    rebuilt.push(framed);
  }
  assert.deepEqual(Buffer.concat(rebuilt), golden, 'whole file');
});

test('golden: SummaryWriter.scalar with the golden values writes the golden records', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-tb-golden-'));
  try {
    const { events } = readEventFile(GOLDEN);
    const w = new SummaryWriter(dir);
    for (const e of events.slice(1)) w.scalar(e.summary![0]!.tag, e.summary![0]!.simpleValue!, e.step, e.wallTime);
    w.close();
    const ours = fs.readFileSync(w.path);
    const mine = readRecords(ours);
    const theirs = readRecords(golden);
    assert.equal(mine.records.length, 101);
    // Record 0 differs only in wall_time (now vs 2021); records 1..100 are identical, so is the tail of the file.
    const goldenTail = golden.subarray(theirs.offsets[1]!);
    assert.deepEqual(ours.subarray(mine.offsets[1]!), goldenTail);
    assert.equal(decodeEvent(mine.records[0]!).fileVersion, 'brain.Event:2');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
