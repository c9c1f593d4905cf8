// Starts the ranks of a single-host job as child processes of a node script, with the environment a
// launcher gives them (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT, a fresh
// SEGDIST_JOB_TOKEN, and RANK_MALLOC_ENV), and watches them: stdout JSON lines are parsed as events, stderr is kept, and
// every wait has a deadline after which all processes are killed. The end-to-end tests and the
// benchmark use it; it is also the seed of `segdist train --gpus N`'s launcher.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';

/**
 * glibc malloc settings for rank processes. ZeroMQ mallocs every received message (a sub-chunk, ~1 MB)
 * and frees it moments later; by default glibc serves such sizes with mmap, or trims the freed heap
 * top back to the OS, so each allreduce faults its ~100 MB of receive buffers in afresh. Keeping them
 * in the heap measured 57% fewer page faults and ~19% less CPU for a 25M-float allreduce at 2 ranks.
 * The cost: a process keeps its peak heap instead of returning it to the OS.
 */
export const RANK_MALLOC_ENV: Readonly<Record<string, string>> = Object.freeze({
  MALLOC_MMAP_THRESHOLD_: String(32 << 20),
  MALLOC_TRIM_THRESHOLD_: String(1 << 30),
});

export interface RankSpec {
  rank: number;
  /** Extra or overriding environment for this process (e.g. a wrong token, for a test). */
  env?: Record<string, string | undefined>;
}

export interface LocalJobOptions {
  /** Compiled JS entry point each rank runs. */
  script: string;
  args?: string[];
  worldSize: number;
  /** Processes to start; default one per rank 0..worldSize-1. */
  ranks?: RankSpec[];
  /** Environment for every process, on top of this process's. */
  env?: Record<string, string | undefined>;
  masterPort?: number;
}

export interface RankExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One child process of the job. */
export class RankProcess {
  readonly events: Record<string, unknown>[] = [];
  stderr = '';
  readonly exited: Promise<RankExit>;
  private stdoutRest = '';
  private eventWaiters: (() => void)[] = [];

  constructor(
    readonly rank: number,
    readonly child: ChildProcess,
  ) {
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const text = this.stdoutRest + chunk;
      const lines = text.split('\n');
      this.stdoutRest = lines.pop()!;
      for (const line of lines) {
        try {
          const ev = JSON.parse(line) as unknown;
          if (typeof ev === 'object' && ev !== null) this.events.push(ev as Record<string, unknown>);
        } catch {
          // Not an event; ignore.
        }
      }
      for (const w of this.eventWaiters.splice(0)) w();
    });
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => {
      for (const w of this.eventWaiters.splice(0)) w();
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first event satisfying `pred`; rejects on exit without one or after `timeoutMs`. */
  async waitForEvent(pred: (ev: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      if (!this.running) throw new Error(`rank ${this.rank} (pid ${this.pid}) exited without the awaited event; stderr: ${this.stderr.trim()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`rank ${this.rank} (pid ${this.pid}): no awaited event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.eventWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The last event of a given kind, if any. */
  lastEvent(kind: string): Record<string, unknown> | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i].event === kind) return this.events[i];
    return undefined;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child.kill(signal);
  }

  writeLine(line: string): void {
    this.child.stdin?.write(line + '\n');
  }
}

export class LocalJob {
  private constructor(
    readonly port: number,
    readonly token: string,
    readonly procs: RankProcess[],
  ) {}

  static async start(opts: LocalJobOptions): Promise<LocalJob> {
    const port = opts.masterPort ?? (await freeLoopbackPort());
    const token = randomBytes(16).toString('hex');
    const specs: RankSpec[] = opts.ranks ?? Array.from({ length: opts.worldSize }, (_, rank) => ({ rank }));
    const procs = specs.map((spec) => {
      const env: NodeJS.ProcessEnv = {
        ...RANK_MALLOC_ENV,
        ...process.env,
        ...opts.env,
        RANK: String(spec.rank),
        LOCAL_RANK: String(spec.rank),
        WORLD_SIZE: String(opts.worldSize),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        SEGDIST_JOB_TOKEN: token,
        ...spec.env,
      };
      for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
      const child = spawn(process.execPath, [opts.script, ...(opts.args ?? [])], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      return new RankProcess(spec.rank, child);
    });
    return new LocalJob(port, token, procs);
  }

  /** Waits for every process to exit; after `timeoutMs` kills them all and rejects. */
  async waitAll(timeoutMs: number): Promise<RankExit[]> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.killAll();
        const alive = this.procs.filter((p) => p.running).map((p) => `rank ${p.rank} (pid ${p.pid})`);
        reject(new Error(`job did not finish within ${timeoutMs} ms; killed ${alive.join(', ')}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([Promise.all(this.procs.map((p) => p.exited)), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  killAll(signal: NodeJS.Signals = 'SIGKILL'): void {
    for (const p of this.procs) p.kill(signal);
  }

  /**
   * Starts a job, runs `body` on it, and kills every process when the body ends, fails, or runs past
   * `deadlineMs` (then rejecting): a caller cannot leave processes behind or hang.
   */
  static async run<T>(opts: LocalJobOptions, deadlineMs: number, body: (job: LocalJob) => Promise<T>): Promise<T> {
    const job = await LocalJob.start(opts);
    let timer: NodeJS.Timeout | undefined;
    try {
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const alive = job.procs.filter((p) => p.running).map((p) => `rank ${p.rank} (pid ${p.pid})`);
          job.killAll();
          const err = job.procs.map((p) => `--- rank ${p.rank} stderr:\n${p.stderr.trim()}`).join('\n');
          reject(new Error(`job did not finish within ${deadlineMs} ms; killed ${alive.join(', ') || 'nothing'}\n${err}`));
        }, deadlineMs);
      });
      return await Promise.race([body(job), deadline]);
    } finally {
      clearTimeout(timer);
      job.killAll();
    }
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
