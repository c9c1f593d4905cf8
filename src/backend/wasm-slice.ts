// Slice and SplitV for the wasm backend as strided heap copies (wasm-simd.ts copyRuns).
//
// The stock wasm Slice first reads the whole input out of the heap into a JS array (readSync), then
// copies the slice element by element; SplitV runs it once per piece. The gradient of a concat is a
// SplitV, so PSPNet's concat of the pyramid branches (8x16x16x384 at base 16) cost ~1% of a step.
// Here each piece is copied straight from heap to heap, one run per row of the innermost two axes.
// Dtypes of 4 bytes only (float32, int32); others go to the stock kernels.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { bytesOf } from './js-kernels';
import { simdLoops, type SimdLoops } from './wasm-simd';

type TensorInfo = tf.TensorInfo;

/** Copies the box [begin, begin + size) of x (4-byte elements) into out, row-major. */
function copyBox(loops: SimdLoops, src: number, shape: number[], begin: number[], size: number[],
                 dst: number): void {
  const rank = shape.length;
  const strides = tf.util.computeStrides(shape); // elements, for axes 0 .. rank-2
  if (rank === 1) {
    loops.copyRuns(dst, src + 4 * begin[0], 1, 1, 4 * size[0], 0, 0, 0, 0);
    return;
  }
  const rowLen = size[rank - 1];
  const rows = size[rank - 2];
  const rowStride = strides[rank - 2];
  // Odometer over the leading axes 0 .. rank-3.
  const lead = size.slice(0, rank - 2);
  const index = new Array<number>(lead.length).fill(0);
  const count = lead.reduce((a, b) => a * b, 1);
  let out = dst;
  for (let k = 0; k < count; k++) {
    let offset = begin[rank - 1] + begin[rank - 2] * rowStride;
    for (let a = 0; a < lead.length; a++) offset += (begin[a] + index[a]) * strides[a];
    loops.copyRuns(out, src + 4 * offset, rows, 1, 4 * rowLen, 0, 4 * rowLen, 0, 4 * rowStride);
    out += 4 * rows * rowLen;
    for (let a = lead.length - 1; a >= 0; a--) {
      if (++index[a] < lead[a]) break;
      index[a] = 0;
    }
  }
}

function usable(backend: BackendWasm, x: TensorInfo): SimdLoops | null {
  if (x.dtype !== 'float32' && x.dtype !== 'int32') return null;
  return simdLoops(backend);
}

function sliceOf(backend: BackendWasm, loops: SimdLoops, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const out = backend.makeOutput(size, x.dtype);
  if (tf.util.sizeFromShape(size) > 0) copyBox(loops, bytesOf(backend, x), x.shape, begin, size, bytesOf(backend, out));
  return out;
}

export function makeSliceWasmConfig(stock: tf.KernelConfig | undefined): tf.KernelConfig {
  return {
    kernelName: tf.Slice,
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: TensorInfo };
      const loops = usable(args.backend as BackendWasm, x);
      if (loops === null || x.shape.length === 0) {
        if (stock === undefined) throw new Error(`wasm Slice: dtype ${x.dtype} is not supported`);
        return stock.kernelFunc(args);
      }
      const { begin, size } = args.attrs as unknown as tf.SliceAttrs;
      const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
      tf.slice_util.assertParamsValid(x as tf.Tensor, b, s);
      return sliceOf(args.backend as BackendWasm, loops, x, b, s);
    },
    setupFunc: stock?.setupFunc,
  };
}

export function makeSplitVWasmConfig(stock: tf.KernelConfig | undefined): tf.KernelConfig {
  return {
    kernelName: tf.SplitV,
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: TensorInfo };
      const backend = args.backend as BackendWasm;
      const loops = usable(backend, x);
      if (loops === null || x.shape.length === 0) {
        if (stock === undefined) throw new Error(`wasm SplitV: dtype ${x.dtype} is not supported`);
        return stock.kernelFunc(args);
      }
      const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
      const ax = tf.util.parseAxisParam(axis, x.shape)[0];
      const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
      const begin = new Array<number>(x.shape.length).fill(0);
      const outs: TensorInfo[] = [];
      try {
        for (const s of sizes) {
          const size = [...x.shape];
          size[ax] = s;
          outs.push(sliceOf(backend, loops, x, [...begin], size));
          begin[ax] += s;
        }
      } catch (err) {
        for (const o of outs) backend.disposeData(o.dataId);
        throw err;
      }
      return outs;
    },
    setupFunc: stock?.setupFunc,
  };
}
