// TensorBoard event files written and read without TensorFlow: see summary-writer.ts and read-events.ts.
export { crc32c, maskCrc, unmaskCrc, maskedCrc32c } from './crc32c';
export {
  encodeEvent,
  decodeEvent,
  textOf,
  FILE_VERSION,
  type TbEvent,
  type DecodedEvent,
  type SummaryValue,
  type SummaryImage,
  type TensorValue,
} from './event';
export { encodeRecord, RecordWriter } from './record-writer';
export { readRecords, RecordCrcError, type RecordReadResult } from './record-reader';
export { SummaryWriter, NullSummaryWriter, type SummaryWriterLike, type SummaryWriterOptions } from './summary-writer';
export {
  readEventFile,
  readEventDir,
  listEventFiles,
  formatEvent,
  formatEventFiles,
  dumpEventDir,
  type EventFileContents,
} from './read-events';
