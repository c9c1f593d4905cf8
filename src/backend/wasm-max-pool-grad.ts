// MaxPoolGrad for the wasm backend as a JS loop: ~1.5-2% of a base-16 step with the stock kernel
// (the stem's 3x3/2 pool over 8x64x64x16), well under 0.5% here.
//
// Each output's gradient goes to the first maximum of its window in row-major order (a strictly
// greater value replaces the current one; padding never wins), which is what the cpu backend's
// kernel and PyTorch do. Channels are the inner loop, so the input is read in memory order.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { bytesOf } from './js-kernels';

type TensorInfo = tf.TensorInfo;

interface Geometry {
  batch: number; inH: number; inW: number; channels: number; outH: number; outW: number;
  strideH: number; strideW: number; effH: number; effW: number; padTop: number; padLeft: number;
}

function maxPoolBackward(x: Float32Array, dy: Float32Array, dx: Float32Array, g: Geometry,
                         best: Float32Array, arg: Int32Array): void {
  const { batch, inH, inW, channels: numC, outH, outW } = g;
  dx.fill(0);
  for (let n = 0; n < batch; n++) {
    for (let oy = 0; oy < outH; oy++) {
      const y0 = oy * g.strideH - g.padTop;
      const yLo = Math.max(0, y0);
      const yHi = Math.min(inH, y0 + g.effH);
      for (let ox = 0; ox < outW; ox++) {
        const x0 = ox * g.strideW - g.padLeft;
        const xLo = Math.max(0, x0);
        const xHi = Math.min(inW, x0 + g.effW);
        best.fill(-Infinity);
        arg.fill(-1);
        for (let iy = yLo; iy < yHi; iy++) {
          for (let ix = xLo; ix < xHi; ix++) {
            const base = ((n * inH + iy) * inW + ix) * numC;
            for (let c = 0; c < numC; c++) {
              const v = x[base + c];
              if (v > best[c]) {
                best[c] = v;
                arg[c] = base + c;
              }
            }
          }
        }
        const out = ((n * outH + oy) * outW + ox) * numC;
        for (let c = 0; c < numC; c++) {
          const a = arg[c];
          if (a >= 0) dx[a] += dy[out + c];
        }
      }
    }
  }
}

function maxPoolGradWasm(args: {
  inputs: { dy: TensorInfo; input: TensorInfo; output: TensorInfo };
  backend: BackendWasm;
  attrs: tf.MaxPoolGradAttrs;
}): TensorInfo {
  const { inputs: { dy, input }, backend, attrs } = args;
  if (input.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`wasm MaxPoolGrad: needs float32 input and dy, got ${input.dtype} and ${dy.dtype}`);
  }
  // tfjs pools have no dilation (the stock kernels pass 1 too).
  const info = tf.backend_util.computePool2DInfo(
      input.shape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad,
      attrs.dimRoundingMode);
  const g: Geometry = {
    batch: info.batchSize, inH: info.inHeight, inW: info.inWidth, channels: info.inChannels,
    outH: info.outHeight, outW: info.outWidth, strideH: info.strideHeight, strideW: info.strideWidth,
    effH: info.effectiveFilterHeight, effW: info.effectiveFilterWidth,
    padTop: info.padInfo.top, padLeft: info.padInfo.left,
  };
  const expectedDy = [g.batch, g.outH, g.outW, g.channels];
  if (dy.shape.length !== 4 || dy.shape.some((d, i) => d !== expectedDy[i])) {
    throw new Error(`wasm MaxPoolGrad: dy has shape [${dy.shape}] but the pooling produces [${expectedDy}]`);
  }
  const dx = backend.makeOutput([...input.shape], 'float32');
  const buffer = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
  const view = (t: TensorInfo) => new Float32Array(buffer, bytesOf(backend, t), tf.util.sizeFromShape(t.shape));
  maxPoolBackward(view(input), view(dy), view(dx), g, new Float32Array(g.channels), new Int32Array(g.channels));
  return dx;
}

export function makeMaxPoolGradWasmConfig(stock: tf.KernelConfig | undefined): tf.KernelConfig {
  return {
    kernelName: tf.MaxPoolGrad,
    backendName: 'wasm',
    kernelFunc: maxPoolGradWasm as unknown as tf.KernelFunc,
    setupFunc: stock?.setupFunc,
  };
}
