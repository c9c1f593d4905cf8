// TFRecord framing and a buffered, append-only record file.
//
// One record on disk (all little-endian):
//   uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

import * as fs from 'node:fs';
import { maskedCrc32c } from './crc32c';

/** Bytes of framing before the data (length + its CRC). */
export const RECORD_HEADER_BYTES = 12;
/** Bytes of framing after the data (its CRC). */
export const RECORD_FOOTER_BYTES = 4;

/** Frames `data` as one TFRecord. */
export function encodeRecord(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + data.length + RECORD_FOOTER_BYTES);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out, 0, 8), 8);
  out.set(data, RECORD_HEADER_BYTES);
  out.writeUInt32LE(maskedCrc32c(data), RECORD_HEADER_BYTES + data.length);
  return out;
}

/**
 * Appends framed records to a file. Records are held in memory until flush(), which hands all of
 * them to the kernel with one write (looping only on a short write), so a crash or kill -9 can cut
 * the file at most inside the last record, never between a record's parts in some other order.
 */
export class RecordWriter {
  readonly path: string;
  private fd: number | undefined;
  private pending: Buffer[] = [];
  private pendingLength = 0;

  /** Creates `path`, failing if it already exists. */
  constructor(path: string) {
    this.path = path;
    this.fd = fs.openSync(path, 'ax');
  }

  get closed(): boolean {
    return this.fd === undefined;
  }

  /** Bytes framed but not yet written. */
  get pendingBytes(): number {
    return this.pendingLength;
  }

  /** Frames `data` and queues it for the next flush. */
  append(data: Uint8Array): void {
    if (this.fd === undefined) throw new Error(`record file ${this.path} is closed`);
    const rec = encodeRecord(data);
    this.pending.push(rec);
    this.pendingLength += rec.length;
  }

  /** Writes every queued record with a single write call. */
  flush(): void {
    if (this.fd === undefined || this.pendingLength === 0) return;
    const chunk = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLength);
    this.pending = [];
    this.pendingLength = 0;
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.fd, chunk, off, chunk.length - off);
  }

  /** Flushes and closes the file. Safe to call more than once. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      this.flush();
    } finally {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }
}
