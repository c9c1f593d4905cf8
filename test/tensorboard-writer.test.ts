import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DT_STRING, encodeEvent, textEvent, textOf } from '../src/tensorboard/event';
import { dumpEventDir, formatFloat32, listEventFiles, readEventDir, readEventFile } from '../src/tensorboard/read-events';
import { readRecords } from '../src/tensorboard/record-reader';
import { NullSummaryWriter, SummaryWriter, type SummaryWriterLike } from '../src/tensorboard/summary-writer';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'segdist-tb-writer-'));
}

/** PNG signature + IHDR chunk (enough for the writer's size/colour check; not a decodable image). */
function fakePng(width: number, height: number, colorType: number): Buffer {
  const b = Buffer.alloc(33 + 16);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0);
  b.writeUInt32BE(13, 8);
  b.write('IHDR', 12, 'latin1');
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  b[24] = 8;
  b[25] = colorType;
  return b;
}

test('round trip: scalars, images and text read back equal, every CRC valid', () => {
  const dir = tmpDir();
  try {
    const logDir = path.join(dir, 'a', 'b', 'run1'); // mkdir -p
    const w = new SummaryWriter(logDir, { filenameSuffix: '.rank0' });
    assert.match(
      path.basename(w.path),
      new RegExp(`^events\\.out\\.tfevents\\.\\d{10}\\.${os.hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.${process.pid}\\.\\d+\\.rank0$`),
    );
    assert.equal(path.dirname(w.path), logDir);
    const scalars: Array<[string, number, number]> = [
      ['loss/train', 0.123456789, 0],
      ['loss/train', 0, 1],
      ['loss/train', -2.5, 2],
      ['lr', 1e-7, 3],
      ['weird/nan', NaN, 4],
      ['weird/inf', -Infinity, 5],
      ['big/step', 3, 2 ** 40],
    ];
    for (const [tag, v, step] of scalars) w.scalar(tag, v, step, 1700000000.25 + step);
    const png = fakePng(4, 3, 6);
    w.image('val/pred', png, 3, 4, 10);
    const gray = fakePng(5, 2, 0);
    w.image('val/gray', gray, 2, 5, 11);
    const notes = '# Config\n\n| key | value |\n|---|---|\n| lr | 0.01 |\nünïcødé ✓ 日本';
    w.text('config', notes, 0);
    w.text('empty', '', 12);
    w.close();

    const raw = fs.readFileSync(w.path);
    const recs = readRecords(raw); // throws on any bad CRC
    assert.equal(recs.truncated, false);
    assert.equal(recs.records.length, 1 + scalars.length + 4);

    const { events, truncated } = readEventFile(w.path);
    assert.equal(truncated, false);
    assert.equal(events[0]!.fileVersion, 'brain.Event:2');
    assert.ok(Math.abs(events[0]!.wallTime - Date.now() / 1000) < 60);
    scalars.forEach(([tag, v, step], i) => {
      const e = events[1 + i]!;
      assert.equal(e.step, step);
      assert.equal(e.wallTime, 1700000000.25 + step);
      assert.equal(e.summary![0]!.tag, tag);
      assert.ok(Object.is(e.summary![0]!.simpleValue, Math.fround(v)), `${tag}: ${e.summary![0]!.simpleValue} vs ${v}`);
    });
    const img = events[1 + scalars.length]!;
    assert.equal(img.step, 10);
    assert.deepEqual(
      { ...img.summary![0]!.image!, encodedImage: Buffer.from(img.summary![0]!.image!.encodedImage) },
      { height: 3, width: 4, colorspace: 4, encodedImage: png },
    );
    assert.equal(events[2 + scalars.length]!.summary![0]!.image!.colorspace, 1);
    const txt = events[3 + scalars.length]!.summary![0]!;
    assert.equal(txt.tag, 'config');
    assert.equal(textOf(txt), notes);
    assert.equal(txt.tensor!.dtype, DT_STRING);
    assert.deepEqual(txt.tensor!.shape, [1]);
    assert.equal(txt.metadata!.pluginData!.pluginName, 'text');
    assert.equal(txt.metadata!.pluginData!.content.length, 0);
    assert.equal(textOf(events[4 + scalars.length]!.summary![0]!), '');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('text event bytes follow the layout PyTorch writes (tensor 8 before metadata 9, shape dim size 1)', () => {
  const got = encodeEvent(textEvent('t', 'hi', 3, 0));
  const value = '0a0174' + '420c' + '0807' + '1204' + '12020801' + '42026869' + '4a08' + '0a06' + '0a0474657874';
  const summary = '0a' + (value.length / 2).toString(16).padStart(2, '0') + value;
  const event = '1003' + '2a' + (summary.length / 2).toString(16).padStart(2, '0') + summary;
  assert.equal(got.toString('hex'), event);
});

test('buffering: nothing but the version record reaches the file before flush; flush writes the rest', () => {
  const dir = tmpDir();
  try {
    const w = new SummaryWriter(dir, { flushEveryMs: 60_000 });
    const headerOnly = fs.statSync(w.path).size;
    assert.equal(readRecords(fs.readFileSync(w.path)).records.length, 1);
    w.scalar('a', 1, 0);
    w.text('b', 'x', 0);
    assert.equal(fs.statSync(w.path).size, headerOnly);
    w.flush();
    assert.equal(readRecords(fs.readFileSync(w.path)).records.length, 3);
    w.close();
    w.close(); // idempotent
    assert.throws(() => w.scalar('a', 1, 1), /closed/);

    const eager = new SummaryWriter(dir, { flushEveryMs: 0 });
    assert.notEqual(eager.path, w.path);
    eager.scalar('a', 1, 0);
    assert.equal(readRecords(fs.readFileSync(eager.path)).records.length, 2);
    eager.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('argument checks', () => {
  const dir = tmpDir();
  try {
    const w = new SummaryWriter(dir);
    assert.throws(() => w.scalar('', 1, 0), TypeError);
    assert.throws(() => w.scalar('a', 1, 1.5), RangeError);
    assert.throws(() => w.image('img', fakePng(4, 3, 2), 4, 3, 0), /PNG is 3x4/); // height/width swapped
    assert.throws(() => w.image('img', fakePng(4, 3, 2), 0, 4, 0), RangeError);
    w.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('NullSummaryWriter has the same interface and writes nothing', () => {
  const writers: SummaryWriterLike[] = [new NullSummaryWriter()];
  for (const w of writers) {
    w.scalar('a', 1, 0);
    w.image('b', Buffer.alloc(1), 1, 1, 0);
    w.text('c', 'd', 0);
    w.flush();
    w.close();
    assert.equal(w.path, '');
  }
});

test('readEventDir finds runs recursively in order; dumpEventDir formats step wall_time tag value', () => {
  const dir = tmpDir();
  try {
    const w1 = new SummaryWriter(path.join(dir, 'run_a'));
    w1.scalar('loss', 0.5, 10, 1700000000.5);
    w1.text('note', 'hello "world"\nbye', 10);
    w1.close();
    const w2 = new SummaryWriter(path.join(dir, 'run_b'));
    w2.image('img', fakePng(2, 1, 2), 1, 2, 20);
    w2.close();
    fs.writeFileSync(path.join(dir, 'run_b', 'not-an-event-file.txt'), 'x');

    assert.deepEqual(listEventFiles(dir), [w1.path, w2.path]);
    assert.deepEqual(listEventFiles(dir, { recursive: false }), []);
    const files = readEventDir(dir);
    assert.deepEqual(files.map((f) => f.events.length), [3, 2]);

    const { lines, ok } = dumpEventDir(dir);
    assert.equal(ok, true);
    assert.equal(lines[0], `# ${path.relative(dir, w1.path)}: 3 events`);
    assert.match(lines[1]!, /^0 \d+\.\d{6} \(file_version\) brain\.Event:2$/);
    assert.equal(lines[2], '10 1700000000.500000 loss 0.5');
    assert.match(lines[3]!, /^10 \d+\.\d{6} note "hello \\"world\\"\\nbye"$/);
    assert.equal(lines[4], `# ${path.relative(dir, w2.path)}: 2 events`);
    assert.match(lines[6]!, /^20 \d+\.\d{6} img <image 2x1 rgb, 49 bytes>$/);
    // A single file can be dumped too.
    assert.equal(dumpEventDir(w1.path).lines.length, 4);
    assert.equal(formatFloat32(Math.fround(0.1)), '0.1');
    assert.equal(formatFloat32(Math.fround(1.4962566)), '1.4962566');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const WRITER_JS = path.resolve(__dirname, '../src/tensorboard/summary-writer.js');

test('a process exiting without close() still flushes its buffered events', () => {
  const dir = tmpDir();
  try {
    const script = `const { SummaryWriter } = require(${JSON.stringify(WRITER_JS)});
      const w = new SummaryWriter(${JSON.stringify(dir)}, { flushEveryMs: 600000 });
      for (let i = 0; i < 5; i++) w.scalar('x', i, i);`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const [file] = listEventFiles(dir);
    const { events, truncated } = readEventFile(file!);
    assert.equal(truncated, false);
    assert.deepEqual(events.slice(1).map((e) => e.step), [0, 1, 2, 3, 4]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('kill -9 mid-run leaves a readable file of consecutive events', async () => {
  const dir = tmpDir();
  try {
    const script = `const { SummaryWriter } = require(${JSON.stringify(WRITER_JS)});
      const w = new SummaryWriter(${JSON.stringify(dir)}, { flushEveryMs: 0 });
      const img = Buffer.alloc(3000, 7);
      for (let i = 0; ; i++) { w.scalar('x', i, i); if (i % 3 === 0) w.image('im', img, 1, 1, i); }`;
    const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const files = fs.readdirSync(dir);
      if (files.length && fs.statSync(path.join(dir, files[0]!)).size > 200_000) break;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const [file] = listEventFiles(dir);
    const { events } = readEventFile(file!);
    assert.ok(events.length > 10, `${events.length} events`);
    const scalars = events.filter((e) => e.summary?.[0]?.simpleValue !== undefined);
    scalars.forEach((e, i) => assert.equal(e.step, i));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
