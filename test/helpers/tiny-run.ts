// A training run small enough for the cpu backend in a test: a tiny PSPNet-ResNet-18 on a tiny
// synthetic dataset, everything in a fresh temporary work dir.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';

export const REPO = path.resolve(__dirname, '../../..');
export const CLI = path.join(REPO, 'bin', 'run.js');

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `segdist-${prefix}-`));
}

/** key=value overrides for a run that takes seconds on the cpu backend. */
export function tinyOverrides(workDir: string, dataRoot = path.join(workDir, 'data')): string[] {
  return [
    `work_dir=${workDir}`, `data.root=${dataRoot}`, 'backend=cpu',
    'data.synth.classes=3', 'data.num_classes=3', 'data.synth.train_count=8', 'data.synth.val_count=4', 'data.synth.size=[32,32]',
    'data.train.crop_size=[24,24]', 'data.train.batch_size=2', 'data.val.batch_size=2', 'data.prefetch=1',
    'model.backbone.base_channels=4', 'model.head.channels=8', 'model.head.pool_scales=[1,2]', 'model.aux.channels=4',
    'train.epochs=4', 'train.val_interval=1', 'train.log_interval=2', 'schedule.warmup_iters=2', 'optimizer.lr=0.05',
  ];
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `segdist` executable. `onStdout` may act on output as it arrives (e.g. send SIGINT). */
export function runCli(
  args: string[],
  opts: { onStdout?: (text: string, child: ReturnType<typeof spawn>) => void; onStderr?: (text: string) => void; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...process.env, FORCE_COLOR: '0', ...opts.env } });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`segdist ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 120000} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, opts.timeoutMs ?? 120000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      opts.onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      opts.onStderr?.(stderr);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
