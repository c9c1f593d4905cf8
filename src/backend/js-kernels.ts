// Kernels written once as plain loops over typed arrays and registered for both the wasm and the cpu
// backend. On wasm the arrays are views of the wasm heap (no copy in or out); on cpu they are the
// backend's own value arrays. The cpu registration exists so that the same ops run, with the same
// arithmetic, in tests on the cpu backend; it is also far faster than composing stock cpu kernels.
//
// A kernel here reads its inputs and writes outputs it allocated; it never keeps a view past its
// return, because any allocation may grow the wasm heap and detach earlier views.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export type TensorInfo = tf.TensorInfo;
export type JsArray = Float32Array | Int32Array;

/** The backends our JS kernels are registered for. */
export const JS_KERNEL_BACKENDS = ['wasm', 'cpu'] as const;

export interface OutputSpec {
  shape: number[];
  dtype: 'float32' | 'int32';
}

export interface JsKernelSpec<A> {
  kernelName: string;
  /** Output shapes and dtypes from the inputs (absent optional inputs are undefined) and attrs. */
  outputs(inputs: Record<string, TensorInfo | undefined>, attrs: A): OutputSpec[];
  /** Fills `outs` (uninitialised on wasm: write every element) from `ins`. */
  compute(ins: Record<string, JsArray | undefined>, outs: JsArray[], attrs: A,
          inputs: Record<string, TensorInfo | undefined>): void;
  /**
   * Optional wasm path working on heap byte offsets (bytesOf) rather than views, e.g. with the
   * SIMD loops of wasm-simd.ts. Returns false to have `compute` run instead.
   */
  computeWasm?(backend: BackendWasm, inputs: Record<string, TensorInfo | undefined>, outputs: TensorInfo[],
               attrs: A): boolean;
}

/** Byte offset of a wasm tensor's data in the backend's memory. */
export function bytesOf(backend: BackendWasm, info: TensorInfo): number {
  const data = backend.dataIdMap.get(info.dataId);
  if (data === undefined) throw new Error('segdist kernel: tensor data is not on the wasm backend');
  return data.memoryOffset;
}

/**
 * A float32 scratch buffer on the wasm heap for per-channel parameters. Take views of it (f32())
 * only after the last allocation of the kernel, and release it before returning.
 */
export class WasmScratch {
  private readonly info: TensorInfo;
  readonly ptr: number;

  constructor(private readonly backend: BackendWasm, readonly floats: number) {
    this.info = backend.makeOutput([floats], 'float32');
    this.ptr = bytesOf(backend, this.info);
  }

  /** Byte offset of float number `i` of the buffer. */
  at(i: number): number {
    return this.ptr + 4 * i;
  }

  f32(): Float32Array {
    const buffer = (this.backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
    return new Float32Array(buffer, this.ptr, this.floats);
  }

  release(): void {
    this.backend.disposeData(this.info.dataId);
  }
}

interface CpuBackendLike {
  data: { get(dataId: tf.DataId): { values?: unknown } | undefined };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: JsArray): TensorInfo;
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function wasmView(backend: BackendWasm, info: TensorInfo): JsArray {
  const data = backend.dataIdMap.get(info.dataId);
  if (data === undefined) throw new Error('segdist kernel: tensor data is not on the wasm backend');
  const buffer = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
  const n = sizeOf(info.shape);
  if (info.dtype === 'float32') return new Float32Array(buffer, data.memoryOffset, n);
  if (info.dtype === 'int32') return new Int32Array(buffer, data.memoryOffset, n);
  throw new Error(`segdist kernel: dtype ${info.dtype} is not supported`);
}

function cpuView(backend: CpuBackendLike, info: TensorInfo): JsArray {
  const values = backend.data.get(info.dataId)?.values;
  if (values instanceof Float32Array || values instanceof Int32Array) return values;
  throw new Error(`segdist kernel: cpu tensor of dtype ${info.dtype} has no float32/int32 values`);
}

function checkDtypes(name: string, inputs: Record<string, TensorInfo | undefined>): void {
  for (const [key, t] of Object.entries(inputs)) {
    if (t !== undefined && t.dtype !== 'float32' && t.dtype !== 'int32') {
      throw new Error(`${name}: input ${key} has dtype ${t.dtype}; expected float32 or int32`);
    }
  }
}

function kernelFuncFor<A>(spec: JsKernelSpec<A>, backendName: 'wasm' | 'cpu'): tf.KernelFunc {
  return (args) => {
    const inputs = args.inputs as Record<string, TensorInfo | undefined>;
    const attrs = args.attrs as unknown as A;
    checkDtypes(spec.kernelName, inputs);
    const specs = spec.outputs(inputs, attrs);
    if (backendName === 'wasm') {
      const backend = args.backend as BackendWasm;
      // Allocate first: malloc may grow the heap, which detaches views taken before.
      const infos = specs.map((o) => backend.makeOutput(o.shape, o.dtype));
      try {
        if (spec.computeWasm !== undefined && spec.computeWasm(backend, inputs, infos, attrs)) return infos;
      } catch (err) {
        for (const info of infos) backend.disposeData(info.dataId);
        throw err;
      }
      const ins: Record<string, JsArray | undefined> = {};
      for (const [key, t] of Object.entries(inputs)) ins[key] = t === undefined ? undefined : wasmView(backend, t);
      const outs = infos.map((info) => wasmView(backend, info));
      try {
        spec.compute(ins, outs, attrs, inputs);
      } catch (err) {
        for (const info of infos) backend.disposeData(info.dataId);
        throw err;
      }
      return infos;
    }
    const backend = args.backend as unknown as CpuBackendLike;
    const ins: Record<string, JsArray | undefined> = {};
    for (const [key, t] of Object.entries(inputs)) ins[key] = t === undefined ? undefined : cpuView(backend, t);
    const outs = specs.map((o) => (o.dtype === 'int32' ? new Int32Array(sizeOf(o.shape)) : new Float32Array(sizeOf(o.shape))));
    spec.compute(ins, outs, attrs, inputs);
    return outs.map((values, i) => backend.makeTensorInfo(specs[i].shape, specs[i].dtype, values));
  };
}

/** Kernel configs for every backend in JS_KERNEL_BACKENDS. Kernels return an array of outputs. */
export function jsKernelConfigs<A>(spec: JsKernelSpec<A>): tf.KernelConfig[] {
  return JS_KERNEL_BACKENDS.map((backendName) => ({
    kernelName: spec.kernelName,
    backendName,
    kernelFunc: kernelFuncFor(spec, backendName),
  }));
}

/** Whether `kernelName` is registered for the active backend (ops fall back to stock ops if not). */
export function hasKernel(kernelName: string): boolean {
  return tf.getKernel(kernelName, tf.getBackend()) !== undefined;
}

/** Runs a registered kernel through the engine (so it is taped and tracked) and returns all outputs. */
export function runKernel(kernelName: string, inputs: Record<string, tf.Tensor | undefined>,
                          attrs: object = {}): tf.Tensor[] {
  const present: tf.NamedTensorMap = {};
  for (const [k, v] of Object.entries(inputs)) if (v !== undefined) present[k] = v;
  const out = tf.engine().runKernel(kernelName, present, attrs as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
  return Array.isArray(out) ? out : [out];
}
