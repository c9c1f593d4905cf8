// Chooses and initialises the tfjs backend a trainer computes on.
//
// The two native backends are optional dependencies: their install downloads
// libtensorflow, which fails without network access, so either may be absent
// or present but broken. They are loaded with require() inside try/catch so
// that both cases become a readable reason instead of a crash at import.
import * as tf from '@tensorflow/tfjs';
import { registerSegdistKernels, registerWasmKernels, wasmKernelsRegistered } from './register-wasm-kernels';

export type BackendName = 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export type ConcreteBackendName = Exclude<BackendName, 'auto'>;

/** Preference order for 'auto'. */
export const AUTO_ORDER: readonly ConcreteBackendName[] =
    ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

/** How a package is brought in; tests substitute a fake. */
export type RequireFn = (id: string) => unknown;

interface NativeBackend {
  pkg: string;
  hint: string;
}

const NATIVE: Record<'tensorflow-gpu' | 'tensorflow', NativeBackend> = {
  'tensorflow-gpu': {
    pkg: '@tensorflow/tfjs-node-gpu',
    hint: 'on a machine with CUDA and network access to download libtensorflow',
  },
  'tensorflow': {
    pkg: '@tensorflow/tfjs-node',
    hint: 'on a machine with network access to download libtensorflow',
  },
};

/** Why a backend could not be loaded; `brief` is the short form auto logs. */
export class BackendUnavailableError extends Error {
  constructor(message: string, readonly brief: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

let loaded: ConcreteBackendName | null = null;
// What the last 'auto' settled on; an explicit load in between clears it, so
// 'auto' then chooses afresh.
let autoChoice: ConcreteBackendName | null = null;

function engineNameOf(name: ConcreteBackendName): string {
  // Both native packages register their backend as 'tensorflow'.
  return name.startsWith('tensorflow') ? 'tensorflow' : name;
}

function isActive(name: ConcreteBackendName | null): name is ConcreteBackendName {
  return name !== null && name === loaded && tf.getBackend() === engineNameOf(name);
}

function isMissing(err: unknown, pkg: string): boolean {
  const e = err as { code?: unknown; message?: unknown };
  // A missing dependency *of* the package is a broken install, not absence.
  return e?.code === 'MODULE_NOT_FOUND' && typeof e.message === 'string' &&
      e.message.includes(`'${pkg}'`);
}

function messageOf(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0];
}

async function activate(tfName: string, label: ConcreteBackendName): Promise<void> {
  let ok: boolean;
  try {
    ok = await tf.setBackend(tfName);
  } catch (err) {
    throw new BackendUnavailableError(
        `backend ${label}: initialisation failed: ${messageOf(err)}`,
        `${label}: ${messageOf(err)}`);
  }
  if (!ok || tf.getBackend() !== tfName) {
    throw new BackendUnavailableError(
        `backend ${label}: tfjs could not initialise backend '${tfName}'`,
        `${label}: initialisation failed`);
  }
  await tf.ready();
}

async function tryLoad(name: ConcreteBackendName, requireFn: RequireFn): Promise<void> {
  switch (name) {
    case 'tensorflow-gpu':
    case 'tensorflow': {
      const { pkg, hint } = NATIVE[name];
      try {
        requireFn(pkg);
      } catch (err) {
        if (isMissing(err, pkg)) {
          throw new BackendUnavailableError(
              `backend ${name}: ${pkg} is not installed; install it with ` +
              `\`npm install ${pkg}\` ${hint}`,
              `${name}: ${pkg} not installed`);
        }
        throw new BackendUnavailableError(
            `backend ${name}: ${pkg} is installed but failed to load: ${messageOf(err)}`,
            `${name}: ${messageOf(err)}`);
      }
      await activate(engineNameOf(name), name);
      return;
    }
    case 'wasm':
      try {
        requireFn('@tensorflow/tfjs-backend-wasm');
      } catch (err) {
        throw new BackendUnavailableError(
            `backend wasm: @tensorflow/tfjs-backend-wasm failed to load: ${messageOf(err)}`,
            `wasm: ${messageOf(err)}`);
      }
      registerWasmKernels();
      await activate('wasm', name);
      return;
    case 'cpu':
      registerSegdistKernels();
      await activate('cpu', name);
      return;
  }
}

/**
 * loadBackend with the package loader made explicit; loadBackend passes
 * Node's require. Exported for tests that simulate absent or broken packages.
 */
export async function loadBackendWith(
    name: BackendName, log: (msg: string) => void, requireFn: RequireFn):
    Promise<ConcreteBackendName> {
  if (name !== 'auto' && !AUTO_ORDER.includes(name)) {
    throw new Error(`unknown backend '${String(name)}'; expected one of auto, ${AUTO_ORDER.join(', ')}`);
  }
  // Idempotent: asking again for what is active changes nothing.
  const current = name === 'auto' ? autoChoice : name;
  if (isActive(current)) {
    if (current === 'wasm') registerWasmKernels();
    if (current === 'cpu') registerSegdistKernels();
    return current;
  }
  if (name !== 'auto') {
    await tryLoad(name, requireFn);
    loaded = name;
    autoChoice = null;
    return name;
  }
  const skipped: string[] = [];
  for (const candidate of AUTO_ORDER) {
    try {
      await tryLoad(candidate, requireFn);
    } catch (err) {
      skipped.push(err instanceof BackendUnavailableError ? err.brief : messageOf(err));
      continue;
    }
    loaded = candidate;
    autoChoice = candidate;
    const why = skipped.length > 0 ? ` (${skipped.join('; ')})` : '';
    log(`backend auto: using ${candidate}${why}`);
    return candidate;
  }
  throw new Error(`backend auto: no backend could be loaded: ${skipped.join('; ')}`);
}

/**
 * Makes `name` the active tfjs backend and returns which one that is. 'auto'
 * takes the first of tensorflow-gpu, tensorflow, wasm, cpu that loads and
 * logs why the earlier ones did not. An explicit name that cannot load throws
 * an Error saying why. On wasm, our replacement kernels (conv gradients, Identity) are registered;
 * on wasm and cpu, the kernels behind src/backend's ops (batchNormTrain, softmaxCrossEntropy).
 */
export async function loadBackend(
    name: BackendName, log: (msg: string) => void = () => {}):
    Promise<ConcreteBackendName> {
  // Production mode: no debug checks, and no "looks like you are running TensorFlow.js in Node.js"
  // banner on the cpu backend, which would land in every trainer's stderr.
  tf.enableProdMode();
  return loadBackendWith(name, log, require);
}

export interface BackendDescription {
  /** What loadBackend settled on, or null if it has not run. */
  name: ConcreteBackendName | null;
  /** The engine's active backend name. */
  tfBackend: string;
  /** Whether our wasm conv gradient kernels are registered. */
  wasmKernelsPatched: boolean;
}

export function describeBackend(): BackendDescription {
  return {
    name: loaded,
    tfBackend: tf.getBackend(),
    wasmKernelsPatched: wasmKernelsRegistered(),
  };
}

/** Whether @tensorflow/tfjs-node-gpu is installed (the launcher's choice of GPU or CPU trainers). */
export function gpuBackendInstalled(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-node-gpu');
    return true;
  } catch {
    return false;
  }
}
