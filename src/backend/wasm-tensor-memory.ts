// Raw access to the wasm backend's heap for our JS kernels.
//
// Kernels run below the engine, so nothing they allocate is tracked: every
// temporary made here must be released here, or it leaks heap memory and a
// data id (the leak test counts backend.numDataIds()).
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export type TensorInfo = tf.TensorInfo;

let columnLimitBytes = 64 * 1024 * 1024;

/**
 * Bound on a kernel's temporary column buffer; larger problems are split
 * over output rows. A bound rather than one whole-batch buffer because the
 * columns of a 3x3, 256-channel conv over 64x64 outputs at batch 8 alone
 * take 300 MB.
 */
export function columnBufferLimit(): number {
  return columnLimitBytes;
}

/** Sets columnBufferLimit and returns the previous value (tests lower it to force splitting). */
export function setColumnBufferLimit(bytes: number): number {
  if (!(bytes > 0)) throw new Error(`column buffer limit must be positive, got ${bytes}`);
  const previous = columnLimitBytes;
  columnLimitBytes = bytes;
  return previous;
}

interface HeapModule {
  HEAPU8: Uint8Array;
  tfjs: { disposeData(id: number): void };
}

function heapModule(backend: BackendWasm): HeapModule {
  return backend.wasm as unknown as HeapModule;
}

/**
 * A Float32Array over the whole wasm heap. Any allocation may grow the heap
 * and detach earlier views, so take a fresh one after allocating.
 */
export function heapF32(backend: BackendWasm): Float32Array {
  return new Float32Array(heapModule(backend).HEAPU8.buffer);
}

/** Index of the tensor's first element in heapF32(backend). */
export function floatOffset(backend: BackendWasm, info: TensorInfo): number {
  const data = backend.dataIdMap.get(info.dataId);
  if (data === undefined) {
    throw new Error('wasm kernel: tensor data is not on the wasm backend');
  }
  // malloc aligns to at least 8 bytes, so the byte offset is a multiple of 4.
  return data.memoryOffset >>> 2;
}

/** Uninitialised float32 heap buffer; release it with releaseTemp. */
export function allocTemp(backend: BackendWasm, shape: number[]): TensorInfo {
  return backend.makeOutput(shape, 'float32');
}

export function releaseTemp(backend: BackendWasm, info: TensorInfo): void {
  backend.disposeData(info.dataId);
}

/**
 * A tensor with its own id over part of an existing buffer, no copy.
 *
 * Why not pass the original tensor: the backend's matmul caches its packed
 * right-hand operand under that operand's id until the id is disposed, so a
 * long-lived input used as the right operand would keep a packed copy alive.
 * A fresh id per call lets us drop that cache entry as soon as we are done.
 */
export function aliasF32(
    backend: BackendWasm, base: TensorInfo, elementOffset: number,
    shape: number[]): TensorInfo {
  const byteOffset = backend.dataIdMap.get(base.dataId)!.memoryOffset +
      elementOffset * 4;
  return backend.makeOutput(shape, 'float32', byteOffset);
}

/** Drops an alias's id (and any operator cached on it) without freeing memory it does not own. */
export function releaseAlias(backend: BackendWasm, alias: TensorInfo): void {
  const data = backend.dataIdMap.get(alias.dataId);
  if (data === undefined) return;
  heapModule(backend).tfjs.disposeData(data.id);
  backend.dataIdMap.delete(alias.dataId);
}

/** Calls another wasm kernel directly; its output is ours to release. */
export function runWasmKernel(
    kernelName: string, backend: BackendWasm, inputs: Record<string, TensorInfo>,
    attrs: Record<string, unknown>): TensorInfo {
  const config = tf.getKernel(kernelName, 'wasm');
  if (config === undefined) {
    throw new Error(`wasm kernel ${kernelName} is not registered`);
  }
  const out = config.kernelFunc({
    inputs,
    backend,
    attrs: attrs as tf.NamedAttrMap,
  });
  if (Array.isArray(out)) {
    throw new Error(`wasm kernel ${kernelName} returned several outputs`);
  }
  return out;
}
