// `segdist train --gpus N`: starts one trainer process per device on this host, gives each the
// launch variables (torchrun's names), and supervises them. A trainer that dies takes the job down
// (the rest are stopped, the failed rank and its last words reported), or, with maxRestarts, the whole
// job starts again from its latest complete checkpoint. Signals are forwarded, and every trainer has
// an IPC channel to the launcher and exits when it closes, so no trainer outlives its launcher.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { freeLoopbackPort, RANK_MALLOC_ENV } from './local-job';

export interface LaunchOptions {
  /** Trainers on this host (one per GPU). */
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  /** Where rank 0's rendezvous listens; 127.0.0.1 for a single host. */
  masterAddr: string;
  /** 0: pick a free port (single host only). */
  masterPort: number;
  /** Shared secret of a multi-host job (generated for a single host). */
  jobToken?: string;
  maxRestarts: number;
  /** The trainer's command line: node and the script are this process's. */
  trainerArgs: string[];
  /** Arguments added to the trainer's command line when the job restarts (e.g. --resume auto). */
  restartArgs: string[];
  /** Whether a GPU backend can load here: decides CUDA_VISIBLE_DEVICES and what the log says. */
  gpuBackend: boolean;
  log: (message: string) => void;
  /** Seconds a trainer gets to stop after SIGTERM before it is killed. */
  graceS?: number;
}

interface Trainer {
  rank: number;
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines it wrote to stderr, for the failure report. */
  tail: string[];
}

export const EXIT_INTERRUPTED = 130;

export async function launch(opts: LaunchOptions): Promise<number> {
  const worldSize = opts.nnodes * opts.nprocPerNode;
  if (opts.nnodes > 1 && !opts.jobToken) {
    throw new Error('a job on several hosts needs a shared job token: pass the same --job-token (or SEGDIST_JOB_TOKEN) to every host\'s launcher');
  }
  opts.log(opts.gpuBackend
    ? `launching ${opts.nprocPerNode} trainer(s) on this host, one per GPU (CUDA_VISIBLE_DEVICES=0..${opts.nprocPerNode - 1}); world size ${worldSize}`
    : `no GPU backend loads on this host (@tensorflow/tfjs-node-gpu is not installed): launching ${opts.nprocPerNode} CPU trainer(s); world size ${worldSize}`);

  let interrupted = false;
  let current: Trainer[] = [];
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) {
      for (const t of current) t.child.kill('SIGKILL');
      return;
    }
    interrupted = true;
    opts.log(`${sig}: asking the trainers to stop (again to kill them)`);
    for (const t of current) t.child.kill(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (let attempt = 0; ; attempt++) {
      const port = opts.masterPort || (await freeLoopbackPort());
      const token = opts.jobToken ?? randomBytes(16).toString('hex');
      const args = attempt === 0 ? opts.trainerArgs : [...opts.trainerArgs, ...opts.restartArgs];
      current = Array.from({ length: opts.nprocPerNode }, (_, local) => startTrainer(opts, local, worldSize, port, token, args));
      const failure = await supervise(current, opts);
      if (interrupted) return EXIT_INTERRUPTED;
      if (!failure) return 0;
      opts.log(`rank ${failure.rank} failed (${describeExit(failure.code, failure.signal)})` + (failure.tail.length ? `; its last lines:\n${failure.tail.map((l) => `  [rank ${failure.rank}] ${l}`).join('\n')}` : ''));
      if (attempt >= opts.maxRestarts) {
        if (opts.maxRestarts > 0) opts.log(`giving up after ${opts.maxRestarts} restart(s)`);
        return 1;
      }
      opts.log(`restarting all trainers from the latest complete checkpoint (restart ${attempt + 1} of ${opts.maxRestarts})`);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function startTrainer(opts: LaunchOptions, localRank: number, worldSize: number, port: number, token: string, args: string[]): Trainer {
  const rank = opts.nodeRank * opts.nprocPerNode + localRank;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // glibc malloc tuned for the comm thread's large, short-lived receive buffers (fewer page faults).
    ...RANK_MALLOC_ENV,
    RANK: String(rank),
    LOCAL_RANK: String(localRank),
    WORLD_SIZE: String(worldSize),
    LOCAL_WORLD_SIZE: String(opts.nprocPerNode),
    MASTER_ADDR: opts.masterAddr,
    MASTER_PORT: String(port),
    SEGDIST_JOB_TOKEN: token,
  };
  // Set before tfjs loads in the trainer: each one sees only its own device.
  if (opts.gpuBackend) env.CUDA_VISIBLE_DEVICES = String(localRank);
  const child = spawn(process.execPath, [...process.execArgv, ...args], { env, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
  opts.log(`rank ${rank}: pid ${child.pid}`);
  const tail: string[] = [];
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => {
    process.stderr.write(rank === 0 ? d : prefixLines(d.toString(), `[rank ${rank}] `));
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    tail.push(...lines.filter((l) => l.trim() !== ''));
    tail.splice(0, Math.max(0, tail.length - 8));
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { rank, child, exit, tail };
}

/** Waits for all trainers; on the first failure stops the others. Returns the first failure, if any. */
async function supervise(trainers: Trainer[], opts: LaunchOptions): Promise<(Trainer & { code: number | null; signal: NodeJS.Signals | null }) | null> {
  let failure: (Trainer & { code: number | null; signal: NodeJS.Signals | null }) | null = null;
  await Promise.all(trainers.map(async (t) => {
    const { code, signal } = await t.exit;
    if ((code === 0 && signal === null) || failure) return;
    if (code === EXIT_INTERRUPTED) return; // stopped on request: not a failure
    failure = { ...t, code, signal };
    for (const other of trainers) if (other !== t && other.child.exitCode === null) other.child.kill('SIGTERM');
    const grace = setTimeout(() => {
      for (const other of trainers) if (other.child.exitCode === null) other.child.kill('SIGKILL');
    }, (opts.graceS ?? 10) * 1000);
    await Promise.all(trainers.map((o) => o.exit));
    clearTimeout(grace);
  }));
  return failure;
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exit code ${code}`;
}

function prefixLines(text: string, prefix: string): string {
  return text.replace(/^(?=.)/gm, prefix);
}
