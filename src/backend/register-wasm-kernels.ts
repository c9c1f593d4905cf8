// Installs our conv gradient kernels on the wasm backend. Called explicitly
// (by loadBackend), never as an import side effect.
import * as tf from '@tensorflow/tfjs';
// The stock wasm kernels must be in the registry before we look up the one we
// replace.
import '@tensorflow/tfjs-backend-wasm';
import { conv2DBackpropFilterWasmConfig } from './wasm-conv2d-backprop-filter';
import { makeConv2DBackpropInputWasmConfig } from './wasm-conv2d-backprop-input';

let installed: tf.KernelConfig[] | null = null;
let stockBackpropInput: tf.KernelConfig | undefined;

function replaceKernel(config: tf.KernelConfig): void {
  // registerKernel over an existing entry works but logs a warning.
  if (tf.getKernel(config.kernelName, config.backendName) !== undefined) {
    tf.unregisterKernel(config.kernelName, config.backendName);
  }
  tf.registerKernel(config);
}

/**
 * Registers Conv2DBackpropFilter and Conv2DBackpropInput for 'wasm'.
 * Returns true if this call installed them, false if they already were.
 */
export function registerWasmKernels(): boolean {
  if (installed !== null && installed.every(
          (c) => tf.getKernel(c.kernelName, c.backendName) === c)) {
    return false;
  }
  const current = tf.getKernel(tf.Conv2DBackpropInput, 'wasm');
  if (installed === null || current !== installed[1]) {
    stockBackpropInput = current;
  }
  const configs = [
    conv2DBackpropFilterWasmConfig,
    makeConv2DBackpropInputWasmConfig(stockBackpropInput),
  ];
  configs.forEach(replaceKernel);
  installed = configs;
  return true;
}

/** Whether our kernels are the ones the registry holds for 'wasm' now. */
export function wasmKernelsRegistered(): boolean {
  return installed !== null && installed.every(
      (c) => tf.getKernel(c.kernelName, c.backendName) === c);
}

/**
 * Puts back what registerWasmKernels replaced (the stock
 * Conv2DBackpropInput; wasm has no stock Conv2DBackpropFilter). For
 * benchmarks and tests that compare against the stock kernels.
 */
export function unregisterWasmKernels(): void {
  if (installed === null) return;
  for (const c of installed) {
    if (tf.getKernel(c.kernelName, c.backendName) === c) {
      tf.unregisterKernel(c.kernelName, c.backendName);
    }
  }
  if (stockBackpropInput !== undefined &&
      tf.getKernel(tf.Conv2DBackpropInput, 'wasm') === undefined) {
    tf.registerKernel(stockBackpropInput);
  }
  installed = null;
}
