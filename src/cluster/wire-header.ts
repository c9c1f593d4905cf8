// Every message segdist puts on a socket is two ZeroMQ frames: this fixed 40-byte header and a payload.
// Keeping the header a separate frame lets the payload be a zero-copy view of a typed array, and a
// fixed binary layout can be checked in a few loads before a single payload byte is trusted: a stray
// connection, a peer on another collective or a peer from another build fails here, loudly, instead of
// being summed into the gradients.
//
// Layout (little endian):
//   0  u32  magic 'SGDC'            4  u8 version   5 u8 op   6 u8 dtype   7 u8 flags (0)
//   8  u32  sender rank            12  u32 sequence number of the collective
//   16 u32  FNV-1a hash of the collective's name
//   20 u32  step (ring step, or control sub-type)  24 u32 chunk index within the step
//   28 u32  payload byte length    32  f64 total bytes of the collective (integral, < 2^53)

export const WIRE_MAGIC = 0x43444753; // 'SGDC' read as a little-endian u32
export const WIRE_VERSION = 1;
export const WIRE_HEADER_BYTES = 40;

export enum WireOp {
  // Rendezvous and control plane (payload: UTF-8 JSON).
  Register = 1,
  Welcome = 2,
  Refuse = 3,
  Ready = 4,
  Go = 5,
  BarrierArrive = 6,
  BarrierRelease = 7,
  StatusQuery = 8,
  StatusProbe = 9,
  StatusReply = 10,
  StatusReport = 11,
  Lost = 12,
  Abort = 13,
  // Data plane (payload: raw elements).
  AllreduceSum = 32,
  AllreduceMean = 33,
  Broadcast = 34,
  BroadcastAck = 35,
}

export enum WireDtype {
  Json = 0,
  Float32 = 1,
}

export interface WireHeader {
  op: WireOp;
  dtype: WireDtype;
  sender: number;
  seq: number;
  nameHash: number;
  step: number;
  chunk: number;
  byteLength: number;
  totalBytes: number;
}

/** A message that is not a segdist message at all (wrong size, magic, version, op...). */
export class WireFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireFormatError';
  }
}

const OPS = new Set<number>(Object.values(WireOp).filter((v): v is number => typeof v === 'number'));
const DTYPE_BYTES: Record<WireDtype, number> = { [WireDtype.Json]: 1, [WireDtype.Float32]: 4 };

export function encodeHeader(h: WireHeader): Buffer {
  const b = Buffer.allocUnsafe(WIRE_HEADER_BYTES);
  b.writeUInt32LE(WIRE_MAGIC, 0);
  b.writeUInt8(WIRE_VERSION, 4);
  b.writeUInt8(h.op, 5);
  b.writeUInt8(h.dtype, 6);
  b.writeUInt8(0, 7);
  b.writeUInt32LE(h.sender >>> 0, 8);
  b.writeUInt32LE(h.seq >>> 0, 12);
  b.writeUInt32LE(h.nameHash >>> 0, 16);
  b.writeUInt32LE(h.step >>> 0, 20);
  b.writeUInt32LE(h.chunk >>> 0, 24);
  b.writeUInt32LE(h.byteLength >>> 0, 28);
  b.writeDoubleLE(h.totalBytes, 32);
  return b;
}

/**
 * Parses and checks a header frame against the payload frame that came with it. Throws a
 * WireFormatError for anything that is not a well-formed message of this protocol version.
 * Whether the message is the one the receiver expects is a separate question (expectHeader).
 */
export function decodeHeader(frame: Uint8Array, payloadBytes: number): WireHeader {
  if (frame.byteLength !== WIRE_HEADER_BYTES) {
    throw new WireFormatError(`header frame is ${frame.byteLength} bytes, expected ${WIRE_HEADER_BYTES}`);
  }
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const magic = v.getUint32(0, true);
  if (magic !== WIRE_MAGIC) throw new WireFormatError(`bad magic 0x${magic.toString(16).padStart(8, '0')}`);
  const version = v.getUint8(4);
  if (version !== WIRE_VERSION) {
    throw new WireFormatError(`protocol version ${version}, this build speaks ${WIRE_VERSION} (mixed segdist versions in one job?)`);
  }
  const op = v.getUint8(5);
  if (!OPS.has(op)) throw new WireFormatError(`unknown op ${op}`);
  const dtype = v.getUint8(6);
  if (!(dtype in DTYPE_BYTES)) throw new WireFormatError(`unknown dtype ${dtype}`);
  if (v.getUint8(7) !== 0) throw new WireFormatError(`reserved flags ${v.getUint8(7)} are not zero`);
  const byteLength = v.getUint32(28, true);
  if (byteLength !== payloadBytes) {
    throw new WireFormatError(`header announces ${byteLength} payload bytes, the payload frame has ${payloadBytes}`);
  }
  if (byteLength % DTYPE_BYTES[dtype as WireDtype] !== 0) {
    throw new WireFormatError(`payload of ${byteLength} bytes is not a whole number of ${WireDtype[dtype]} elements`);
  }
  const totalBytes = v.getFloat64(32, true);
  if (!Number.isSafeInteger(totalBytes) || totalBytes < 0) throw new WireFormatError(`bad total byte count ${totalBytes}`);
  return {
    op,
    dtype,
    sender: v.getUint32(8, true),
    seq: v.getUint32(12, true),
    nameHash: v.getUint32(16, true),
    step: v.getUint32(20, true),
    chunk: v.getUint32(24, true),
    byteLength,
    totalBytes,
  };
}

/** 32-bit FNV-1a of the UTF-8 name: cheap, stable across processes, plenty to tell collectives apart. */
export function hashName(name: string): number {
  let h = 0x811c9dc5;
  const bytes = Buffer.from(name, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** What a receiver expects of the next message of a collective; undefined fields are not checked. */
export interface ExpectedMessage {
  op: WireOp;
  dtype: WireDtype;
  sender: number;
  seq: number;
  nameHash: number;
  totalBytes: number;
  step?: number;
  chunk?: number;
  byteLength?: number;
}

/** How to describe the collective in an error; names are resolved from their hashes where we can. */
export interface CollectiveContext {
  rank: number;
  name: string;
  kind: string;
  /** Names this process has used, so a foreign hash can be reported as "probably 'x'". */
  knownNames?: ReadonlyMap<number, string>;
}

/** A well-formed message that belongs to a different collective than the one being run. */
export class WireMismatchError extends Error {
  constructor(
    message: string,
    readonly rank: number,
    readonly peer: number,
    readonly collective: string,
  ) {
    super(message);
    this.name = 'WireMismatchError';
  }
}

/**
 * Checks that a decoded header is the message the running collective expects next, and throws a
 * WireMismatchError naming both ranks and the collective when it is not: the usual cause is ranks
 * calling collectives in different orders or with different tensor sizes, which must stop the job.
 */
export function expectHeader(h: WireHeader, want: ExpectedMessage, ctx: CollectiveContext): void {
  const problems: string[] = [];
  if (h.sender !== want.sender) problems.push(`it claims to come from rank ${h.sender}, expected rank ${want.sender}`);
  if (h.op !== want.op) problems.push(`it is a ${WireOp[h.op]} message, expected ${WireOp[want.op]}`);
  if (h.nameHash !== want.nameHash) {
    const guess = ctx.knownNames?.get(h.nameHash);
    problems.push(`it belongs to collective ${guess !== undefined ? `'${guess}'` : `#${hex(h.nameHash)}`}, not '${ctx.name}'`);
  }
  if (h.seq !== want.seq) problems.push(`its sequence number is ${h.seq}, expected ${want.seq}`);
  if (h.dtype !== want.dtype) problems.push(`its dtype is ${WireDtype[h.dtype]}, expected ${WireDtype[want.dtype]}`);
  if (h.totalBytes !== want.totalBytes) {
    problems.push(`its tensor is ${h.totalBytes} bytes, this rank's is ${want.totalBytes} bytes`);
  }
  if (problems.length === 0) {
    if (want.step !== undefined && h.step !== want.step) problems.push(`it is step ${h.step}, expected step ${want.step}`);
    if (want.chunk !== undefined && h.chunk !== want.chunk) problems.push(`it is chunk ${h.chunk}, expected chunk ${want.chunk}`);
    if (want.byteLength !== undefined && h.byteLength !== want.byteLength) {
      problems.push(`it carries ${h.byteLength} bytes, expected ${want.byteLength}`);
    }
  }
  if (problems.length > 0) {
    throw new WireMismatchError(
      `${ctx.kind} '${ctx.name}' #${want.seq} on rank ${ctx.rank}: rejected a message from rank ${want.sender}: ${problems.join('; ')}`,
      ctx.rank,
      want.sender,
      ctx.name,
    );
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
