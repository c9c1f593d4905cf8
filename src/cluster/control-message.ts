// The control plane (rendezvous, barriers, status probes, aborts) carries small, rare messages, so their
// bodies are JSON; they still travel behind the same binary header as the data plane and are checked
// field by field before use, because the rendezvous port is open to anything that can reach it.

import type { CommErrorData } from './comm-error';
import { decodeHeader, encodeHeader, hashName, WireDtype, WireFormatError, WireOp, type WireHeader } from './wire-header';

/** Sent by every rank to rank 0 to join the job. */
export interface RegisterBody {
  rank: number;
  worldSize: number;
  token: string;
  dataEndpoint: string;
  host: string;
  pid: number;
  subChunkBytes: number;
  /** The data plane this rank speaks ('stream' or 'zeromq'); every rank must use rank 0's. */
  dataPlane: string;
}

/** Rank 0's answer once every rank has registered. */
export interface WelcomeBody {
  /** Data endpoint of every rank, by rank. */
  endpoints: string[];
  /** Random per-job value; a rank's data connection identifies itself with `${nonce}:${rank}`. */
  nonce: string;
}

export interface RefuseBody {
  message: string;
}

export interface BarrierArriveBody {
  name: string;
}

export interface BarrierReleaseBody {
  error?: CommErrorData;
}

/** What a rank's comm thread is doing, as reported to a status probe. */
export interface RankStatus {
  rank: number;
  /** The collective in progress, if any. */
  current: { seq: number; name: string; kind: string } | null;
  /** The last collective this rank finished (seq 0: none yet). */
  completed: { seq: number; name: string; kind: string };
}

export interface StatusQueryBody {
  queryId: number;
}

export interface StatusProbeBody {
  probeId: number;
}

export interface StatusReplyBody {
  probeId: number;
  status: RankStatus;
}

export interface StatusReportBody {
  queryId: number;
  /** By rank; null where the rank did not answer in time. */
  ranks: (RankStatus | null)[];
}

export interface LostBody {
  rank: number;
  reason: string;
}

export interface AbortBody {
  error: CommErrorData;
}

export interface ControlMessage {
  header: WireHeader;
  body: unknown;
}

/** Header fields a control message may set besides op and sender. */
export interface ControlFields {
  seq?: number;
  name?: string;
}

export function encodeControl(op: WireOp, sender: number, body: object, fields: ControlFields = {}): Buffer[] {
  const payload = Buffer.from(JSON.stringify(body), 'utf8');
  const header = encodeHeader({
    op,
    dtype: WireDtype.Json,
    sender,
    seq: fields.seq ?? 0,
    nameHash: fields.name === undefined ? 0 : hashName(fields.name),
    step: 0,
    chunk: 0,
    byteLength: payload.byteLength,
    totalBytes: payload.byteLength,
  });
  return [header, payload];
}

/** Decodes [header, payload]; throws WireFormatError for anything that is not a control message. */
export function decodeControl(header: Uint8Array, payload: Uint8Array): ControlMessage {
  const h = decodeHeader(header, payload.byteLength);
  if (h.dtype !== WireDtype.Json) throw new WireFormatError(`control message ${WireOp[h.op]} has dtype ${WireDtype[h.dtype]}`);
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch {
    throw new WireFormatError(`control message ${WireOp[h.op]} has a body that is not JSON`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new WireFormatError(`control message ${WireOp[h.op]} has a body that is not an object`);
  }
  return { header: h, body };
}

// --- field checks: a body is used only after every field it needs has the right type -------------

export function field<T>(body: unknown, key: string, check: (v: unknown) => v is T, what: string): T {
  const v = (body as Record<string, unknown>)[key];
  if (!check(v)) throw new WireFormatError(`field '${key}' is not ${what}`);
  return v;
}

export const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
export const isString = (v: unknown): v is string => typeof v === 'string';
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function isCommErrorData(v: unknown): v is CommErrorData {
  return (
    isObject(v) &&
    typeof v.code === 'string' &&
    typeof v.message === 'string' &&
    Array.isArray(v.ranks) &&
    v.ranks.every((r) => isInt(r))
  );
}

export function isRankStatus(v: unknown): v is RankStatus {
  const isRef = (x: unknown) => isObject(x) && isInt(x.seq) && isString(x.name) && isString(x.kind);
  return isObject(v) && isInt(v.rank) && (v.current === null || isRef(v.current)) && isRef(v.completed);
}
