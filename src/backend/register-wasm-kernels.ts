// Installs our kernels. Called explicitly (by loadBackend), never as an import side effect.
//
// Two kinds:
// - replacements of stock wasm kernels (registerWasmKernels): the conv gradients, a zero-copy
//   Identity, MaxPoolGrad, Slice and SplitV. Ops reach them through tfjs's own op code, so nothing else changes.
// - kernels of our own under new names, for the ops in this folder (registerSegdistKernels): batch
//   norm, softmax cross-entropy, separable linear maps. Registered for wasm and cpu; ops check for
//   them and fall back to stock ops on any other backend.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
// The stock wasm kernels must be in the registry before we look up the ones we replace.
import '@tensorflow/tfjs-backend-wasm';
import { conv2DBackpropFilterWasmConfig } from './wasm-conv2d-backprop-filter';
import { makeConv2DBackpropInputWasmConfig } from './wasm-conv2d-backprop-input';
import { batchNormKernelConfigs } from './batch-norm';
import { crossEntropyKernelConfigs } from './softmax-cross-entropy';
import { separableKernelConfigs } from './separable-linear';
import { makeMaxPoolGradWasmConfig } from './wasm-max-pool-grad';
import { makeSliceWasmConfig, makeSplitVWasmConfig } from './wasm-slice';

let installed: tf.KernelConfig[] | null = null;
/** The stock kernels our replacements displaced, by kernel name (undefined: there was none). */
const stock = new Map<string, tf.KernelConfig | undefined>();

function replaceKernel(config: tf.KernelConfig): void {
  // registerKernel over an existing entry works but logs a warning.
  if (tf.getKernel(config.kernelName, config.backendName) !== undefined) {
    tf.unregisterKernel(config.kernelName, config.backendName);
  }
  tf.registerKernel(config);
}

/**
 * The stock wasm Identity copies the tensor; tfjs calls it for every tensor a gradient saves (one
 * copy per saved tensor, ~250 per training step). Tensors are immutable, so sharing the data with a
 * reference count is enough; this is what the cpu backend's Identity (and wasm's own Reshape) do.
 */
function makeIdentityWasmConfig(stockIdentity: tf.KernelConfig | undefined): tf.KernelConfig {
  return {
    kernelName: tf.Identity,
    backendName: 'wasm',
    kernelFunc: (args) => {
      const x = (args.inputs as { x: tf.TensorInfo }).x;
      if (x.dtype === 'string') {
        if (stockIdentity === undefined) throw new Error('wasm Identity: string tensors are not supported');
        return stockIdentity.kernelFunc(args);
      }
      (args.backend as BackendWasm).incRef(x.dataId);
      return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
    },
    setupFunc: stockIdentity?.setupFunc,
  };
}

/** Our replacement for each stock wasm kernel, given the stock one. */
const REPLACEMENTS: [string, (stockConfig: tf.KernelConfig | undefined) => tf.KernelConfig][] = [
  [tf.Conv2DBackpropFilter, () => conv2DBackpropFilterWasmConfig],
  [tf.Conv2DBackpropInput, makeConv2DBackpropInputWasmConfig],
  [tf.Identity, makeIdentityWasmConfig],
  [tf.MaxPoolGrad, makeMaxPoolGradWasmConfig],
  [tf.Slice, makeSliceWasmConfig],
  [tf.SplitV, makeSplitVWasmConfig],
];

/**
 * Registers our replacements of stock wasm kernels (Conv2DBackpropFilter, Conv2DBackpropInput,
 * Identity, MaxPoolGrad, Slice, SplitV) and the segdist kernels (registerSegdistKernels). Returns true if this call installed
 * the replacements, false if they already were.
 */
export function registerWasmKernels(): boolean {
  registerSegdistKernels();
  if (wasmKernelsRegistered()) return false;
  const configs = REPLACEMENTS.map(([name, make], i) => {
    const current = tf.getKernel(name, 'wasm');
    if (installed === null || current !== installed[i]) stock.set(name, current);
    return make(stock.get(name));
  });
  configs.forEach(replaceKernel);
  installed = configs;
  return true;
}

/** Whether our replacements are the ones the registry holds for 'wasm' now. */
export function wasmKernelsRegistered(): boolean {
  return installed !== null && installed.every(
      (c) => tf.getKernel(c.kernelName, c.backendName) === c);
}

/** Whether the wasm conv gradient kernels are ours (which, unlike stock ones, honour `dilations`). */
export function wasmConvGradientsRegistered(): boolean {
  return installed !== null && installed.slice(0, 2).every(
      (c) => tf.getKernel(c.kernelName, c.backendName) === c);
}

/**
 * Puts back what registerWasmKernels replaced (wasm has no stock Conv2DBackpropFilter). For
 * benchmarks and tests that compare against the stock kernels. The segdist kernels stay.
 */
export function unregisterWasmKernels(): void {
  if (installed === null) return;
  for (const c of installed) {
    if (tf.getKernel(c.kernelName, c.backendName) === c) {
      tf.unregisterKernel(c.kernelName, c.backendName);
    }
    const original = stock.get(c.kernelName);
    if (original !== undefined && tf.getKernel(c.kernelName, 'wasm') === undefined) {
      tf.registerKernel(original);
    }
  }
  installed = null;
}

const SEGDIST_KERNELS: tf.KernelConfig[] =
    [...batchNormKernelConfigs, ...crossEntropyKernelConfigs, ...separableKernelConfigs];

/**
 * Registers the kernels behind the ops of src/backend (batchNormTrain, softmaxCrossEntropy ...) for
 * the wasm and cpu backends. Idempotent; loadBackend calls it for wasm and cpu.
 */
export function registerSegdistKernels(): void {
  for (const c of SEGDIST_KERNELS) {
    if (tf.getKernel(c.kernelName, c.backendName) !== c) replaceKernel(c);
  }
}

/** Removes the segdist kernels (the ops then run on stock ops); for tests and benchmarks. */
export function unregisterSegdistKernels(): void {
  for (const c of SEGDIST_KERNELS) {
    if (tf.getKernel(c.kernelName, c.backendName) === c) tf.unregisterKernel(c.kernelName, c.backendName);
  }
}
