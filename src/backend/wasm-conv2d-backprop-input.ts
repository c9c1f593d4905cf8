// Conv2DBackpropInput for the wasm backend. The stock kernel is a scalar loop
// (~2.5 GFLOP/s, most of a training step); both paths here put the FLOPs on
// XNNPACK instead.
//
// Stride 1: dx is a forward convolution of dy with the filter rotated 180
// degrees and its in/out channels swapped, padded so the output is x's size.
// Other strides: cols[M, K] = dy[M, cout] @ W^T[cout, K] on the matmul, then a
// col2im scatter-add in JS. W^T is materialised because matmul with
// transposeB falls to a scalar loop on wasm (measured 1.9 vs 24 GFLOP/s).
// NCHW goes to the stock kernel, which supports it.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  aliasF32, allocTemp, columnBufferLimit, floatOffset, heapF32, releaseAlias, releaseTemp,
  runWasmKernel, TensorInfo,
} from './wasm-tensor-memory';

/** Stock attrs plus dilations, which tfjs's op never passes but a custom gradient may. */
export interface Conv2DBackpropInputWasmAttrs extends tf.Conv2DBackpropInputAttrs {
  dilations?: [number, number] | number;
}

type Args = {
  inputs: { dy: TensorInfo; filter: TensorInfo };
  backend: BackendWasm;
  attrs: Conv2DBackpropInputWasmAttrs;
};

function viaForwardConv(
    args: Args, info: tf.backend_util.Conv2DInfo, pads: number[]): TensorInfo {
  const { inputs: { dy, filter }, backend } = args;
  const taps = info.filterHeight * info.filterWidth;
  const block = info.inChannels * info.outChannels;
  // [taps, cin, cout] -> [taps, cout, cin]; reversing the tap order is the
  // 180-degree rotation since tap (kh-1-ky, kw-1-kx) = taps-1-t.
  const swapped = runWasmKernel(tf.Transpose, backend, {
    x: { dataId: filter.dataId, shape: [taps, info.inChannels, info.outChannels], dtype: 'float32' },
  }, { perm: [0, 2, 1] });
  let rotated: TensorInfo;
  try {
    rotated = allocTemp(backend, [info.filterHeight, info.filterWidth, info.outChannels, info.inChannels]);
    const heap = heapF32(backend);
    const from = floatOffset(backend, swapped);
    const to = floatOffset(backend, rotated);
    for (let t = 0; t < taps; t++) {
      heap.copyWithin(to + (taps - 1 - t) * block, from + t * block, from + (t + 1) * block);
    }
  } finally {
    releaseTemp(backend, swapped);
  }
  try {
    const [top, bottom, left, right] = pads;
    return runWasmKernel(tf.Conv2D, backend, { x: dy, filter: rotated }, {
      strides: [1, 1],
      dilations: [info.dilationHeight, info.dilationWidth],
      pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
      dataFormat: 'NHWC',
    });
  } finally {
    releaseTemp(backend, rotated);
  }
}

function scatterColumns(
    heap: Float32Array, colBase: number, dxBase: number,
    info: tf.backend_util.Conv2DInfo, row0: number, row1: number): void {
  const { inHeight: inH, inWidth: inW, inChannels: inC, outHeight: outH,
          outWidth: outW, filterHeight: kh, filterWidth: kw, strideHeight: sh,
          strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const k = kh * kw * inC;
  let col = colBase;
  for (let row = row0; row < row1; row++) {
    const n = (row / outH) | 0;
    const oy = row - n * outH;
    for (let ox = 0; ox < outW; ox++, col += k) {
      for (let ky = 0; ky < kh; ky++) {
        const iy = oy * sh - padTop + ky * dh;
        if (iy < 0 || iy >= inH) continue;
        const dxRow = dxBase + (n * inH + iy) * inW * inC;
        for (let kx = 0; kx < kw; kx++) {
          const ix = ox * sw - padLeft + kx * dw;
          if (ix < 0 || ix >= inW) continue;
          const src = col + (ky * kw + kx) * inC;
          const dst = dxRow + ix * inC;
          for (let c = 0; c < inC; c++) heap[dst + c] += heap[src + c];
        }
      }
    }
  }
}

function viaCol2Im(args: Args, info: tf.backend_util.Conv2DInfo): TensorInfo {
  const { inputs: { dy, filter }, backend } = args;
  const k = info.filterHeight * info.filterWidth * info.inChannels;
  const cout = info.outChannels;
  const rows = info.batchSize * info.outHeight;
  const rowsPerChunk =
      Math.max(1, Math.min(rows, Math.floor(columnBufferLimit() / (4 * k * info.outWidth))));

  const dx = allocTemp(backend, info.inShape);
  const dxSize = tf.util.sizeFromShape(info.inShape);
  heapF32(backend).fill(0, floatOffset(backend, dx), floatOffset(backend, dx) + dxSize);
  if (rows === 0 || k === 0 || cout === 0) return dx;

  let wT: TensorInfo | null = null;
  try {
    wT = runWasmKernel(tf.Transpose, backend, {
      x: { dataId: filter.dataId, shape: [k, cout], dtype: 'float32' },
    }, { perm: [1, 0] });
    for (let row0 = 0; row0 < rows; row0 += rowsPerChunk) {
      const row1 = Math.min(rows, row0 + rowsPerChunk);
      const width = (row1 - row0) * info.outWidth;
      const a = aliasF32(backend, dy, row0 * info.outWidth * cout, [width, cout]);
      let cols: TensorInfo;
      try {
        cols = runWasmKernel(tf.BatchMatMul, backend, { a, b: wT },
                             { transposeA: false, transposeB: false });
      } finally {
        releaseAlias(backend, a);
      }
      try {
        scatterColumns(heapF32(backend), floatOffset(backend, cols),
                       floatOffset(backend, dx), info, row0, row1);
      } finally {
        releaseTemp(backend, cols);
      }
    }
  } catch (err) {
    releaseTemp(backend, dx);
    throw err;
  } finally {
    if (wT !== null) releaseTemp(backend, wT);
  }
  return dx;
}

/**
 * Builds the kernel config. `stock` is the kernel it replaces, kept for NCHW
 * (and its setupFunc, which must still run if the backend initialises later).
 */
export function makeConv2DBackpropInputWasmConfig(stock: tf.KernelConfig | undefined): tf.KernelConfig {
  function conv2DBackpropInputWasm(args: Args): TensorInfo {
    const { inputs: { dy, filter }, attrs } = args;
    const dataFormat = tf.backend_util.convertConv2DDataFormat(attrs.dataFormat);
    if (dataFormat !== 'channelsLast') {
      if (stock === undefined) {
        throw new Error(
            `wasm Conv2DBackpropInput: dataFormat '${attrs.dataFormat}' is ` +
            `not supported; only NHWC is`);
      }
      return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as TensorInfo;
    }
    if (dy.dtype !== 'float32' || filter.dtype !== 'float32') {
      throw new Error(
          `wasm Conv2DBackpropInput: needs float32 dy and filter, got ` +
          `${dy.dtype} and ${filter.dtype}`);
    }
    const info = tf.backend_util.computeConv2DInfo(
        attrs.inputShape, filter.shape as [number, number, number, number],
        attrs.strides, attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode,
        false, dataFormat);
    const expectedDy = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
    if (dy.shape.length !== 4 || dy.shape.some((d, i) => d !== expectedDy[i])) {
      throw new Error(
          `wasm Conv2DBackpropInput: dy has shape [${dy.shape}] but the ` +
          `convolution produces [${expectedDy}]`);
    }
    if (info.strideHeight === 1 && info.strideWidth === 1) {
      const extentH = (info.filterHeight - 1) * info.dilationHeight;
      const extentW = (info.filterWidth - 1) * info.dilationWidth;
      const top = extentH - info.padInfo.top;
      const left = extentW - info.padInfo.left;
      const bottom = info.inHeight + extentH - info.outHeight - top;
      const right = info.inWidth + extentW - info.outWidth - left;
      // Padding wider than the filter leaves negative pads here, which the
      // forward convolution cannot take; col2im handles any geometry.
      if (top >= 0 && left >= 0 && bottom >= 0 && right >= 0 && info.outHeight > 0 &&
          info.outWidth > 0) {
        return viaForwardConv(args, info, [top, bottom, left, right]);
      }
    }
    return viaCol2Im(args, info);
  }

  return {
    kernelName: tf.Conv2DBackpropInput,
    backendName: 'wasm',
    kernelFunc: conv2DBackpropInputWasm as unknown as tf.KernelFunc,
    setupFunc: stock?.setupFunc,
  };
}
