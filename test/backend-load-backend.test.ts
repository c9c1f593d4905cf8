// Backend selection. The native tfjs-node packages are simulated with a fake
// require so the outcome does not depend on what this machine has installed.
// Tests run in order and share loadBackend's module state on purpose.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  describeBackend, loadBackend, loadBackendWith, RequireFn,
} from '../src/backend/load-backend';
import { registerWasmKernels } from '../src/backend/register-wasm-kernels';

function notFound(id: string): Error {
  return Object.assign(new Error(`Cannot find module '${id}'\nRequire stack:\n- /somewhere`),
                       { code: 'MODULE_NOT_FOUND' });
}

/** A require where the named packages are absent, the broken ones throw, the rest resolve normally. */
function fakeRequire(opts: { absent?: string[]; broken?: Record<string, Error> }): RequireFn {
  return (id: string) => {
    if (opts.absent?.includes(id)) throw notFound(id);
    const failure = opts.broken?.[id];
    if (failure !== undefined) throw failure;
    return require(id);
  };
}

const NATIVE = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

test('an absent tfjs-node-gpu is a clean error with the install command', async () => {
  await assert.rejects(
      loadBackendWith('tensorflow-gpu', () => {}, fakeRequire({ absent: NATIVE })),
      (err: Error) => {
        assert.match(err.message, /^backend tensorflow-gpu: @tensorflow\/tfjs-node-gpu is not installed/);
        assert.match(err.message, /`npm install @tensorflow\/tfjs-node-gpu` on a machine with CUDA/);
        return true;
      });
});

test('an absent tfjs-node is a clean error with the install command', async () => {
  await assert.rejects(
      loadBackendWith('tensorflow', () => {}, fakeRequire({ absent: NATIVE })),
      /^BackendUnavailableError: backend tensorflow: @tensorflow\/tfjs-node is not installed; install it with `npm install @tensorflow\/tfjs-node`/);
});

test('an installed package that fails to load carries the underlying message', async () => {
  const broken = new Error('libtensorflow.so.2: cannot open shared object file: No such file or directory');
  await assert.rejects(
      loadBackendWith('tensorflow', () => {}, fakeRequire({ broken: { '@tensorflow/tfjs-node': broken } })),
      /backend tensorflow: @tensorflow\/tfjs-node is installed but failed to load: libtensorflow\.so\.2: cannot open shared object file/);
});

test('a missing dependency of an installed package counts as failing to load, not as absent', async () => {
  await assert.rejects(
      loadBackendWith('tensorflow-gpu', () => {},
                      fakeRequire({ broken: { '@tensorflow/tfjs-node-gpu': notFound('@mapbox/node-pre-gyp') } })),
      /is installed but failed to load: Cannot find module '@mapbox\/node-pre-gyp'$/);
});

test('a package that loads but registers no backend is reported', async () => {
  await assert.rejects(
      loadBackendWith('tensorflow', () => {}, () => ({})),
      /^BackendUnavailableError: backend tensorflow: initialisation failed: Backend name 'tensorflow' not found in registry/);
});

test('unknown names are refused', async () => {
  await assert.rejects(loadBackend('tpu' as never), /unknown backend 'tpu'/);
});

test('auto skips absent native backends, takes wasm and says why', async () => {
  const lines: string[] = [];
  const got = await loadBackendWith('auto', (m) => lines.push(m), fakeRequire({ absent: NATIVE }));
  assert.equal(got, 'wasm');
  assert.equal(tf.getBackend(), 'wasm');
  assert.equal(lines.length, 1);
  assert.equal(lines[0], 'backend auto: using wasm (tensorflow-gpu: @tensorflow/tfjs-node-gpu not ' +
                         'installed; tensorflow: @tensorflow/tfjs-node not installed)');
  assert.deepEqual(describeBackend(), { name: 'wasm', tfBackend: 'wasm', wasmKernelsPatched: true });
  assert.notEqual(tf.getKernel(tf.Conv2DBackpropFilter, 'wasm'), undefined);
});

test('loading again is idempotent', async () => {
  const lines: string[] = [];
  assert.equal(await loadBackendWith('auto', (m) => lines.push(m), fakeRequire({ absent: NATIVE })), 'wasm');
  assert.equal(await loadBackend('wasm'), 'wasm');
  assert.equal(await loadBackend('wasm'), 'wasm');
  assert.deepEqual(lines, [], 'a repeated auto logs nothing new');
  assert.equal(registerWasmKernels(), false, 'kernels were already registered');
  assert.equal(describeBackend().wasmKernelsPatched, true);
});

test('an explicit cpu switches backends, leaving the wasm kernels registered', async () => {
  assert.equal(await loadBackend('cpu'), 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  assert.deepEqual(describeBackend(), { name: 'cpu', tfBackend: 'cpu', wasmKernelsPatched: true });
});

test('auto falls through to cpu when wasm fails too', async () => {
  const lines: string[] = [];
  const got = await loadBackendWith('auto', (m) => lines.push(m), fakeRequire({
    absent: NATIVE,
    broken: { '@tensorflow/tfjs-backend-wasm': new Error('WebAssembly is not available') },
  }));
  assert.equal(got, 'cpu');
  assert.match(lines[0], /^backend auto: using cpu \(.*; wasm: WebAssembly is not available\)$/);
  assert.equal(await loadBackend('wasm'), 'wasm');
  assert.equal(tf.getBackend(), 'wasm');
});
