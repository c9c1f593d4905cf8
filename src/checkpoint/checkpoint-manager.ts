// Owns the save policy. A checkpoint is a directory written under a hidden temporary name and
// renamed when complete, so anything without the final name is ignored (and swept on start):
// a crash at any moment leaves the last complete checkpoint loadable.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeSafetensors, NamedArray, readSafetensors } from './safetensors';
import { fsyncDir, writeFileDurable } from './atomic-fs';
import type { CheckpointState } from './checkpoint-state';

export interface CheckpointContent {
  model: Map<string, NamedArray>;
  optimizer: Map<string, NamedArray>;
  state: CheckpointState;
}

const MODEL_FILE = 'model.safetensors';
/** __metadata__.format of a model file: PyTorch/mmseg names, tfjs layouts (conv weights HWIO). */
export const MODEL_FILE_FORMAT = 'pt-names-hwio';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const STATE_FILE = 'state.json';
const BEST = 'best';
const TMP_PREFIX = '.tmp-';

export class CheckpointManager {
  constructor(readonly dir: string, private readonly keepLast: number) {
    fs.mkdirSync(dir, { recursive: true });
    // Half-written checkpoints of a crashed run: never loadable, so remove them.
    for (const entry of fs.readdirSync(dir)) {
      if (entry.startsWith(TMP_PREFIX) || entry.startsWith('.old-')) fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
    }
  }

  /** Writes `name` atomically and applies keep_last. Returns the checkpoint's path. */
  save(name: string, content: CheckpointContent): string {
    const final = path.join(this.dir, name);
    const tmp = path.join(this.dir, `${TMP_PREFIX}${name}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    writeFileDurable(path.join(tmp, MODEL_FILE), encodeSafetensors(content.model, { format: MODEL_FILE_FORMAT }));
    writeFileDurable(path.join(tmp, OPTIMIZER_FILE), encodeSafetensors(content.optimizer));
    writeFileDurable(path.join(tmp, STATE_FILE), JSON.stringify(content.state, null, 2) + '\n');
    fsyncDir(tmp);
    this.publish(tmp, final);
    this.prune();
    return final;
  }

  /** Makes `best` a copy of the given checkpoint (hard links: no extra disk, same bytes). */
  markBest(checkpoint: string): void {
    const tmp = path.join(this.dir, `${TMP_PREFIX}${BEST}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    for (const f of [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE]) {
      try {
        fs.linkSync(path.join(checkpoint, f), path.join(tmp, f));
      } catch {
        fs.copyFileSync(path.join(checkpoint, f), path.join(tmp, f));
      }
    }
    fsyncDir(tmp);
    this.publish(tmp, path.join(this.dir, BEST));
  }

  /** The complete checkpoint with the highest iteration, `best` excluded; null if none. */
  latest(): string | null {
    let bestIter = -1;
    let found: string | null = null;
    for (const name of this.completeCheckpoints()) {
      const iter = readState(path.join(this.dir, name)).iteration;
      if (iter > bestIter) {
        bestIter = iter;
        found = path.join(this.dir, name);
      }
    }
    return found;
  }

  private completeCheckpoints(): string[] {
    return fs.readdirSync(this.dir).filter((n) => !n.startsWith('.') && n !== BEST && fs.existsSync(path.join(this.dir, n, STATE_FILE)));
  }

  // Renaming a directory cannot replace a non-empty one, so an existing target is first moved aside
  // under a name that the constructor sweeps; between the two renames the old copy still exists.
  private publish(tmp: string, final: string): void {
    let aside: string | undefined;
    if (fs.existsSync(final)) {
      aside = path.join(this.dir, `.old-${path.basename(final)}-${process.pid}`);
      fs.rmSync(aside, { recursive: true, force: true });
      fs.renameSync(final, aside);
    }
    fs.renameSync(tmp, final);
    fsyncDir(this.dir);
    if (aside) fs.rmSync(aside, { recursive: true, force: true });
  }

  private prune(): void {
    if (this.keepLast <= 0) return;
    const byIter = this.completeCheckpoints()
      .map((name) => ({ name, iter: readState(path.join(this.dir, name)).iteration }))
      .sort((a, b) => b.iter - a.iter);
    for (const old of byIter.slice(this.keepLast)) fs.rmSync(path.join(this.dir, old.name), { recursive: true, force: true });
  }
}

function readState(dir: string): CheckpointState {
  const file = path.join(dir, STATE_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`checkpoint ${dir}: cannot read ${STATE_FILE}: ${(e as Error).message}`);
  }
  const s = parsed as Partial<CheckpointState>;
  if (s.format !== 'segdist-checkpoint' || typeof s.iteration !== 'number') {
    throw new Error(`checkpoint ${dir}: ${STATE_FILE} is not a segdist checkpoint state`);
  }
  return s as CheckpointState;
}

/** Loads a checkpoint directory; a missing or damaged file is an error naming it. */
export function loadCheckpoint(dir: string): CheckpointContent {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`checkpoint ${dir}: not found (expected a checkpoint directory)`);
  const state = readState(dir);
  const model = readSafetensors(path.join(dir, MODEL_FILE)).tensors;
  const optimizer = readSafetensors(path.join(dir, OPTIMIZER_FILE)).tensors;
  return { model, optimizer, state };
}

/** Resolves `--resume auto` to the latest complete checkpoint of a work dir (or null). */
export function findLatestCheckpoint(checkpointDir: string): string | null {
  if (!fs.existsSync(checkpointDir)) return null;
  return new CheckpointManager(checkpointDir, 0).latest();
}
