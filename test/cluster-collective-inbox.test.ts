import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CollectiveInbox } from '../src/cluster/collective-inbox';
import type { CommError } from '../src/cluster/comm-error';
import { WireDtype, WireOp, type WireHeader } from '../src/cluster/wire-header';

const msg = (seq: number, chunk: number): WireHeader => ({
  op: WireOp.AllreduceSum,
  dtype: WireDtype.Float32,
  sender: 0,
  seq,
  nameHash: 1,
  step: 0,
  chunk,
  byteLength: 4,
  totalBytes: 8,
});

function inbox(): { box: CollectiveInbox; errors: CommError[] } {
  const errors: CommError[] = [];
  return { box: new CollectiveInbox(1, 0, (e) => errors.push(e)), errors };
}

test('messages of a collective that has not begun wait, and arrive in order at begin()', () => {
  const { box, errors } = inbox();
  const seen: string[] = [];
  box.begin(1, (h, p, placed) => seen.push(`#${h.seq}.${h.chunk} ${p[0]} ${placed}`));
  box.deliver(msg(1, 0), Uint8Array.of(10), true);
  box.deliver(msg(2, 0), Uint8Array.of(20), false); // the previous rank is ahead
  box.deliver(msg(2, 1), Uint8Array.of(21), false);
  assert.equal(box.isAhead(2), true);
  box.end(1);
  assert.equal(box.isActive(1), false);
  assert.deepEqual(seen, ['#1.0 10 true']);
  box.begin(2, (h, p, placed) => seen.push(`#${h.seq}.${h.chunk} ${p[0]} ${placed}`));
  assert.deepEqual(seen, ['#1.0 10 true', '#2.0 20 false', '#2.1 21 false']);
  assert.equal(box.isActive(2), true);
  assert.equal(box.isAhead(2), false);
  assert.deepEqual(errors, []);
});

test('a message of a collective that already ended is a protocol error naming both ranks', () => {
  const { box, errors } = inbox();
  box.begin(3, () => assert.fail('not for the running collective'));
  box.end(3);
  box.deliver(msg(2, 0), Uint8Array.of(1), false);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'protocol');
  assert.deepEqual(errors[0].ranks, [0]);
  assert.match(errors[0].message, /rank 1 received a AllreduceSum message for collective #2 from rank 0, but that collective already ended here \(latest #3\)/);
});

test('a collective that fails while its early messages are delivered gets no more of them', () => {
  const { box } = inbox();
  box.deliver(msg(1, 0), Uint8Array.of(1), false);
  box.deliver(msg(1, 1), Uint8Array.of(2), false);
  let calls = 0;
  box.begin(1, () => {
    calls++;
    box.end(1); // as a failing collective does
  });
  assert.equal(calls, 1);
  box.deliver(msg(1, 2), Uint8Array.of(3), false);
  assert.equal(calls, 1);
});

test('after clear() nothing is delivered or kept', () => {
  const { box, errors } = inbox();
  let calls = 0;
  box.deliver(msg(5, 0), Uint8Array.of(1), false);
  box.clear();
  box.begin(5, () => calls++);
  assert.equal(calls, 0);
  assert.deepEqual(errors, []);
});
