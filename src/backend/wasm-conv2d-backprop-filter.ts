// Conv2DBackpropFilter for the wasm backend, which ships none (tfjs 4.22).
//
// dW[K, cout] = cols[K, M] @ dy[M, cout], K = kh*kw*cin, M = N*outH*outW, run
// on the backend's own BatchMatMul (XNNPACK, ~25 GFLOP/s here). The column
// matrix is built already transposed because matmul with transposeA falls to
// a scalar loop on wasm (1.7 GFLOP/s). Each column row is one input channel at
// one filter tap, so reading x channel-major (one Transpose kernel call) turns
// the build into runs of contiguous copies along output rows.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  aliasF32, allocTemp, columnBufferLimit, floatOffset, heapF32, releaseAlias, releaseTemp,
  runWasmKernel, TensorInfo,
} from './wasm-tensor-memory';
import { simdLoops, type SimdLoops } from './wasm-simd';

/** Stock attrs plus dilations, which tfjs's op never passes but a custom gradient may. */
export interface Conv2DBackpropFilterWasmAttrs extends tf.Conv2DBackpropFilterAttrs {
  dilations?: [number, number] | number;
}

interface ColumnGeometry {
  batch: number; inH: number; inW: number; inC: number;
  outH: number; outW: number;
  kh: number; kw: number;
  strideH: number; strideW: number;
  dilationH: number; dilationW: number;
  padTop: number; padLeft: number;
}

// Below this many floats a loop beats copyWithin's call overhead.
const SHORT_RUN = 24;

/**
 * Writes rows [row0, row1) of the output grid (row = n*outH + oy) into the
 * transposed column matrix at colBase, which has `width` columns.
 * xtBase points at x laid out [inC, batch, inH, inW].
 */
function fillColumns(
    heap: Float32Array, colBase: number, width: number, xtBase: number,
    g: ColumnGeometry, row0: number, row1: number): void {
  const { inH, inW, inC, outH, outW, kh, kw, strideH, strideW, dilationH,
          dilationW, padTop, padLeft } = g;
  const plane = g.batch * inH * inW;
  for (let ky = 0; ky < kh; ky++) {
    for (let kx = 0; kx < kw; kx++) {
      // Output columns ox with 0 <= ox*strideW + ix0 < inW read real input.
      const ix0 = kx * dilationW - padLeft;
      const oxLo = ix0 >= 0 ? 0 : Math.min(outW, Math.ceil(-ix0 / strideW));
      const oxHi = ix0 > inW - 1 ?
          oxLo :
          Math.max(oxLo, Math.min(outW, Math.floor((inW - 1 - ix0) / strideW) + 1));
      for (let c = 0; c < inC; c++) {
        let dst = colBase + ((ky * kw + kx) * inC + c) * width;
        const channel = xtBase + c * plane;
        for (let row = row0; row < row1; row++, dst += outW) {
          const n = (row / outH) | 0;
          const iy = (row - n * outH) * strideH - padTop + ky * dilationH;
          if (iy < 0 || iy >= inH) {
            for (let ox = 0; ox < outW; ox++) heap[dst + ox] = 0;
            continue;
          }
          const src = channel + (n * inH + iy) * inW + ix0;
          for (let ox = 0; ox < oxLo; ox++) heap[dst + ox] = 0;
          if (strideW === 1) {
            if (oxHi - oxLo > SHORT_RUN) {
              heap.copyWithin(dst + oxLo, src + oxLo, src + oxHi);
            } else {
              for (let ox = oxLo; ox < oxHi; ox++) heap[dst + ox] = heap[src + ox];
            }
          } else {
            for (let ox = oxLo; ox < oxHi; ox++) heap[dst + ox] = heap[src + ox * strideW];
          }
          for (let ox = oxHi; ox < outW; ox++) heap[dst + ox] = 0;
        }
      }
    }
  }
}

/** Builds column-matrix chunks: fill(colBase, width, row0, row1) as fillColumns. */
interface ColumnFiller {
  fill(colBase: number, width: number, row0: number, row1: number): void;
  release(): void;
}

/** fillColumns over the channel-major x; JS loops. */
function jsFiller(backend: BackendWasm, xt: TensorInfo, g: ColumnGeometry): ColumnFiller {
  return {
    fill: (colBase, width, row0, row1) =>
      fillColumns(heapF32(backend), colBase, width, floatOffset(backend, xt), g, row0, row1),
    release: () => {},
  };
}

/**
 * The same columns with the wasm copy loops of wasm-simd.ts (~10x faster than the JS loops, whose
 * per-row bookkeeping dominated for 16-wide maps). x is first copied into a zero-padded
 * channel-major buffer [inC, N, Hp, Wp], so that every run of a column row is one plain copy (or,
 * for a strided width, one gather): no border cases. For each tap and each image in the chunk, one
 * call copies all inC channels' runs.
 */
function simdFiller(backend: BackendWasm, loops: SimdLoops, xt: TensorInfo, g: ColumnGeometry,
                    padBottom: number, padRight: number): ColumnFiller {
  const effH = (g.kh - 1) * g.dilationH + 1;
  const effW = (g.kw - 1) * g.dilationW + 1;
  const hp = Math.max(g.inH + g.padTop + padBottom, (g.outH - 1) * g.strideH + effH, g.padTop + g.inH);
  const wp = Math.max(g.inW + g.padLeft + padRight, (g.outW - 1) * g.strideW + effW, g.padLeft + g.inW);
  const plane = g.batch * hp * wp;
  const padded = allocTemp(backend, [g.inC * plane]);
  const base = floatOffset(backend, padded);
  heapF32(backend).fill(0, base, base + g.inC * plane);
  loops.copyRuns(4 * (base + g.padTop * wp + g.padLeft), 4 * floatOffset(backend, xt),
                 g.inC * g.batch, g.inH, 4 * g.inW, 4 * wp, 4 * hp * wp, 4 * g.inW, 4 * g.inH * g.inW);
  return {
    fill(colBase, width, row0, row1) {
      for (let ky = 0; ky < g.kh; ky++) {
        for (let kx = 0; kx < g.kw; kx++) {
          const tapRow = (ky * g.kw + kx) * g.inC;
          for (let row = row0; row < row1;) {
            const n = Math.floor(row / g.outH);
            const oy0 = row - n * g.outH;
            const count = Math.min(row1 - row, g.outH - oy0);
            const dst = 4 * (colBase + tapRow * width + (row - row0) * g.outW);
            const src = 4 * (base + (n * hp + oy0 * g.strideH + ky * g.dilationH) * wp + kx * g.dilationW);
            if (g.strideW === 1) {
              loops.copyRuns(dst, src, g.inC, count, 4 * g.outW, 4 * g.outW, 4 * width, 4 * g.strideH * wp, 4 * plane);
            } else {
              loops.gatherRuns(dst, src, g.inC, count, g.outW, 4 * g.strideW, 4 * g.outW, 4 * width,
                               4 * g.strideH * wp, 4 * plane);
            }
            row += count;
          }
        }
      }
    },
    release: () => releaseTemp(backend, padded),
  };
}

export function conv2DBackpropFilterWasm(args: {
  inputs: { x: TensorInfo; dy: TensorInfo };
  backend: BackendWasm;
  attrs: Conv2DBackpropFilterWasmAttrs;
}): TensorInfo {
  const { inputs: { x, dy }, backend, attrs } = args;
  const dataFormat = tf.backend_util.convertConv2DDataFormat(attrs.dataFormat);
  if (dataFormat !== 'channelsLast') {
    throw new Error(
        `wasm Conv2DBackpropFilter: dataFormat '${attrs.dataFormat}' is not ` +
        `supported; only NHWC is`);
  }
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(
        `wasm Conv2DBackpropFilter: needs float32 x and dy, got ${x.dtype} ` +
        `and ${dy.dtype}`);
  }
  const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], attrs.filterShape,
      attrs.strides, attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode,
      false, dataFormat);
  const expectedDy = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
  if (dy.shape.length !== 4 || dy.shape.some((d, i) => d !== expectedDy[i])) {
    throw new Error(
        `wasm Conv2DBackpropFilter: dy has shape [${dy.shape}] but the ` +
        `convolution produces [${expectedDy}]`);
  }
  const g: ColumnGeometry = {
    batch: info.batchSize, inH: info.inHeight, inW: info.inWidth,
    inC: info.inChannels, outH: info.outHeight, outW: info.outWidth,
    kh: info.filterHeight, kw: info.filterWidth,
    strideH: info.strideHeight, strideW: info.strideWidth,
    dilationH: info.dilationHeight, dilationW: info.dilationWidth,
    padTop: info.padInfo.top, padLeft: info.padInfo.left,
  };
  const k = g.kh * g.kw * g.inC;
  const cout = info.outChannels;
  const rows = g.batch * g.outH;
  const m = rows * g.outW;
  if (m === 0 || k === 0 || cout === 0) {
    const zeros = allocTemp(backend, attrs.filterShape);
    heapF32(backend).fill(0, floatOffset(backend, zeros), floatOffset(backend, zeros) + k * cout);
    return zeros;
  }

  // Channel-major x: [inC, N, H, W]. For a 1x1, stride-1, unpadded filter
  // this already is the column matrix.
  const xt = runWasmKernel(tf.Transpose, backend, { x }, { perm: [3, 0, 1, 2] });
  const pointwise = g.kh === 1 && g.kw === 1 && g.strideH === 1 &&
      g.strideW === 1 && g.padTop === 0 && g.padLeft === 0 &&
      g.outH === g.inH && g.outW === g.inW;

  let result: TensorInfo | null = null;
  let filler: ColumnFiller | null = null;
  try {
    const loops = pointwise ? null : simdLoops(backend);
    filler = pointwise ? null : loops === null ? jsFiller(backend, xt, g) :
        simdFiller(backend, loops, xt, g, info.padInfo.bottom, info.padInfo.right);
    const rowsPerChunk = pointwise ? rows :
        Math.max(1, Math.min(rows, Math.floor(columnBufferLimit() / (4 * k * g.outW))));
    const cols = pointwise ? null :
        allocTemp(backend, [k, rowsPerChunk * g.outW]);
    try {
      for (let row0 = 0; row0 < rows; row0 += rowsPerChunk) {
        const row1 = Math.min(rows, row0 + rowsPerChunk);
        const width = (row1 - row0) * g.outW;
        let a: TensorInfo;
        if (cols === null) {
          a = { dataId: xt.dataId, shape: [k, width], dtype: 'float32' };
        } else {
          filler!.fill(floatOffset(backend, cols), width, row0, row1);
          // Rows of the buffer are `width` apart in the last, shorter chunk.
          a = { dataId: cols.dataId, shape: [k, width], dtype: 'float32' };
        }
        const b = aliasF32(backend, dy, row0 * g.outW * cout, [width, cout]);
        let part: TensorInfo;
        try {
          part = runWasmKernel(tf.BatchMatMul, backend, { a, b },
                               { transposeA: false, transposeB: false });
        } finally {
          releaseAlias(backend, b);
        }
        if (result === null) {
          result = part;
        } else {
          const heap = heapF32(backend);
          const acc = floatOffset(backend, result);
          const add = floatOffset(backend, part);
          for (let i = 0, n = k * cout; i < n; i++) heap[acc + i] += heap[add + i];
          releaseTemp(backend, part);
        }
      }
    } finally {
      if (cols !== null) releaseTemp(backend, cols);
    }
  } catch (err) {
    if (result !== null) releaseTemp(backend, result);
    throw err;
  } finally {
    if (filler !== null) filler.release();
    releaseTemp(backend, xt);
  }
  return { dataId: result!.dataId, shape: [...attrs.filterShape], dtype: 'float32' };
}

export const conv2DBackpropFilterWasmConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilterWasm as unknown as tf.KernelFunc,
};
