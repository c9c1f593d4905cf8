// The launcher (or torchrun-style tooling) describes a process's place in the job through environment
// variables with torchrun's names, so a segdist trainer can be started by hand, by our launcher or by a
// cluster scheduler alike. This module is the only place that reads them; everything else takes a
// DistEnv, so tests can build one without touching process.env.

import { isIP } from 'node:net';

export interface DistEnv {
  /** Global rank of this process, 0 <= rank < worldSize. */
  readonly rank: number;
  /** Rank among the processes on this host (picks the device). */
  readonly localRank: number;
  readonly worldSize: number;
  /** Where rank 0 runs the rendezvous. Empty for world size 1. */
  readonly masterAddr: string;
  /** Rendezvous port on masterAddr. 0 for world size 1. */
  readonly masterPort: number;
  /** Shared secret every rank must present at rendezvous ('' when not set on a loopback job). */
  readonly jobToken: string;
}

/** The environment of a process started without a launcher: a job of one. */
export const SINGLE_PROCESS_ENV: DistEnv = Object.freeze({
  rank: 0,
  localRank: 0,
  worldSize: 1,
  masterAddr: '',
  masterPort: 0,
  jobToken: '',
});

export class DistEnvError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'DistEnvError';
  }
}

const LAUNCH_VARIABLES = ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'] as const;

/**
 * Reads RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and SEGDIST_JOB_TOKEN.
 * No launch variable at all means a job of one. Anything inconsistent throws a DistEnvError whose
 * message names the variable, because a half-configured rank would otherwise hang at rendezvous.
 */
export function readDistEnv(env: NodeJS.ProcessEnv = process.env): DistEnv {
  const present = LAUNCH_VARIABLES.filter((v) => env[v] !== undefined && env[v] !== '');
  if (present.length === 0) return SINGLE_PROCESS_ENV;

  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE === '') {
    throw new DistEnvError(
      'WORLD_SIZE',
      `WORLD_SIZE is not set, but ${present.join(', ')} ${present.length === 1 ? 'is' : 'are'} ` +
        '(set WORLD_SIZE to the number of processes in the job, or unset all launch variables for a single process)',
    );
  }
  const worldSize = parseInteger(env, 'WORLD_SIZE', 1, 65535);
  const rank = env.RANK === undefined || env.RANK === '' ? missing('RANK', worldSize) : parseInteger(env, 'RANK', 0, worldSize - 1);
  const localRank =
    env.LOCAL_RANK === undefined || env.LOCAL_RANK === '' ? rank : parseInteger(env, 'LOCAL_RANK', 0, worldSize - 1);
  const token = readToken(env);

  if (worldSize === 1) {
    // A job of one needs no rendezvous, so an absent master address is fine; a present one is still checked.
    const masterAddr = env.MASTER_ADDR ? parseMasterAddr(env.MASTER_ADDR) : '';
    const masterPort = env.MASTER_PORT ? parseInteger(env, 'MASTER_PORT', 1, 65535) : 0;
    return Object.freeze({ rank, localRank, worldSize, masterAddr, masterPort, jobToken: token ?? '' });
  }

  if (env.MASTER_ADDR === undefined || env.MASTER_ADDR === '') {
    throw new DistEnvError('MASTER_ADDR', `MASTER_ADDR is not set; WORLD_SIZE=${worldSize} needs the address where rank 0 runs the rendezvous`);
  }
  if (env.MASTER_PORT === undefined || env.MASTER_PORT === '') {
    throw new DistEnvError('MASTER_PORT', `MASTER_PORT is not set; WORLD_SIZE=${worldSize} needs the port where rank 0 runs the rendezvous`);
  }
  const masterAddr = parseMasterAddr(env.MASTER_ADDR);
  const masterPort = parseInteger(env, 'MASTER_PORT', 1, 65535);
  if (token === undefined && !isLoopbackHost(masterAddr)) {
    // Off loopback anyone who can reach the port could join the job and feed it gradients.
    throw new DistEnvError(
      'SEGDIST_JOB_TOKEN',
      `SEGDIST_JOB_TOKEN is not set; it is required when MASTER_ADDR (${masterAddr}) is not a loopback address ` +
        '(give every rank the same random string)',
    );
  }
  return Object.freeze({ rank, localRank, worldSize, masterAddr, masterPort, jobToken: token ?? '' });
}

/** True for 127.0.0.0/8, ::1 and localhost: addresses that never leave this host. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h.startsWith('::ffff:127.');
}

function missing(variable: string, worldSize: number): never {
  throw new DistEnvError(variable, `${variable} is not set; WORLD_SIZE=${worldSize} needs each process's rank (0..${worldSize - 1})`);
}

function parseInteger(env: NodeJS.ProcessEnv, variable: string, min: number, max: number): number {
  const raw = (env[variable] ?? '').trim();
  if (!/^\d+$/.test(raw)) {
    throw new DistEnvError(variable, `${variable}=${JSON.stringify(env[variable])} is not a non-negative integer`);
  }
  const value = Number(raw);
  if (value < min || value > max) {
    throw new DistEnvError(variable, `${variable}=${value} is out of range (expected ${min}..${max})`);
  }
  return value;
}

function parseMasterAddr(raw: string): string {
  const addr = raw.trim();
  // A host name or an IP literal; no scheme, port or path, which people sometimes paste from a URL.
  const bare = addr.startsWith('[') && addr.endsWith(']') ? addr.slice(1, -1) : addr;
  const hostname = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
  if (isIP(bare) === 0 && !hostname.test(bare)) {
    throw new DistEnvError('MASTER_ADDR', `MASTER_ADDR=${JSON.stringify(raw)} is not a host name or IP address (no scheme or port)`);
  }
  return bare;
}

function readToken(env: NodeJS.ProcessEnv): string | undefined {
  const token = env.SEGDIST_JOB_TOKEN;
  if (token === undefined) return undefined;
  if (token.length === 0) {
    throw new DistEnvError('SEGDIST_JOB_TOKEN', 'SEGDIST_JOB_TOKEN is set but empty; unset it or give every rank the same non-empty string');
  }
  if (token.length > 1024) {
    throw new DistEnvError('SEGDIST_JOB_TOKEN', `SEGDIST_JOB_TOKEN is ${token.length} characters long (at most 1024)`);
  }
  return token;
}
