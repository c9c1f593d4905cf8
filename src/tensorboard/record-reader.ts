// TFRecord reading with every CRC checked. A file that ends inside a record (a writer killed
// mid-write, or a file read while it is being written) is not an error: the complete records
// before it are returned with `truncated: true`. A CRC mismatch is an error carrying its offset.

import { crc32c, unmaskCrc } from './crc32c';
import { RECORD_FOOTER_BYTES, RECORD_HEADER_BYTES } from './record-writer';

export class RecordCrcError extends Error {
  /** Byte offset in the file of the CRC that did not match. */
  readonly offset: number;
  /** Byte offset in the file of the record that holds it. */
  readonly recordOffset: number;
  /** Index of that record (0-based). */
  readonly recordIndex: number;
  /** Which CRC: the one over the 8 length bytes, or the one over the data. */
  readonly part: 'length' | 'data';
  readonly expected: number;
  readonly actual: number;

  constructor(
    opts: { offset: number; recordOffset: number; recordIndex: number; part: 'length' | 'data'; expected: number; actual: number },
    source?: string,
  ) {
    const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
    super(
      `${source ? `${source}: ` : ''}bad ${opts.part} CRC at byte offset ${opts.offset} ` +
        `(record ${opts.recordIndex} starting at byte ${opts.recordOffset}): ` +
        `stored ${hex(opts.expected)}, computed ${hex(opts.actual)}`,
    );
    this.name = 'RecordCrcError';
    this.offset = opts.offset;
    this.recordOffset = opts.recordOffset;
    this.recordIndex = opts.recordIndex;
    this.part = opts.part;
    this.expected = opts.expected;
    this.actual = opts.actual;
  }
}

export interface RecordReadResult {
  /** Record payloads, as views into the input buffer. */
  records: Uint8Array[];
  /** Byte offset of each record's frame in the input. */
  offsets: number[];
  /** True when the input ends inside a record; that partial record is not in `records`. */
  truncated: boolean;
  /** Bytes consumed by the complete records (where a partial tail, if any, begins). */
  validBytes: number;
  /** Set only with onCrcError 'stop': the CRC error that ended reading. */
  error?: RecordCrcError;
}

export interface ReadRecordsOptions {
  /** 'throw' (default) throws RecordCrcError; 'stop' returns the records before the bad one, with `error` set. */
  onCrcError?: 'throw' | 'stop';
  /** Name used in error messages (a file path). */
  source?: string;
}

/** Splits a buffer holding TFRecords into their payloads, validating both CRCs of each. */
export function readRecords(buf: Uint8Array, opts: ReadRecordsOptions = {}): RecordReadResult {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const records: Uint8Array[] = [];
  const offsets: number[] = [];
  let pos = 0;
  const fail = (e: RecordCrcError): RecordReadResult => {
    if (opts.onCrcError === 'stop') return { records, offsets, truncated: false, validBytes: pos, error: e };
    throw e;
  };
  while (pos < buf.length) {
    if (buf.length - pos < RECORD_HEADER_BYTES) return { records, offsets, truncated: true, validBytes: pos };
    const storedLenCrc = view.getUint32(pos + 8, true);
    const lenCrc = crc32c(buf, 0, pos, pos + 8);
    if (unmaskCrc(storedLenCrc) !== lenCrc) {
      return fail(
        new RecordCrcError(
          { offset: pos + 8, recordOffset: pos, recordIndex: records.length, part: 'length', expected: unmaskCrc(storedLenCrc), actual: lenCrc },
          opts.source,
        ),
      );
    }
    const len = view.getBigUint64(pos, true);
    const avail = buf.length - pos - RECORD_HEADER_BYTES - RECORD_FOOTER_BYTES;
    if (len > BigInt(avail)) return { records, offsets, truncated: true, validBytes: pos };
    const n = Number(len);
    const dataStart = pos + RECORD_HEADER_BYTES;
    const crcAt = dataStart + n;
    const storedDataCrc = view.getUint32(crcAt, true);
    const dataCrc = crc32c(buf, 0, dataStart, crcAt);
    if (unmaskCrc(storedDataCrc) !== dataCrc) {
      return fail(
        new RecordCrcError(
          { offset: crcAt, recordOffset: pos, recordIndex: records.length, part: 'data', expected: unmaskCrc(storedDataCrc), actual: dataCrc },
          opts.source,
        ),
      );
    }
    records.push(buf.subarray(dataStart, crcAt));
    offsets.push(pos);
    pos = crcAt + RECORD_FOOTER_BYTES;
  }
  return { records, offsets, truncated: false, validBytes: pos };
}
