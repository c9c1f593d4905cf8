// Training-mode batch norm (NHWC, statistics over N, H, W), optionally fused with a residual add and
// a ReLU, as four kernels of our own and one op with its own gradient.
//
// Why: composed from stock ops, BN + ReLU forward and backward is ~20 small kernels per layer (means,
// squares, broadcasts, Step and Mul for the ReLU gradient, a clone per saved tensor), ~25x PyTorch's
// cost on wasm. Here it is four kernels and five passes over the activation:
//   forward   SegdistBatchNormStats     x -> mean, var (biased; two-pass, float64 accumulators)
//             SegdistBatchNormApply     y = act(x * scale + shift [+ residual]),
//                                       scale = gamma * rstd, shift = beta - mean * scale
//   backward  SegdistBatchNormGradStats g = dy * [y > 0 if relu] -> sum(g), sum(g * xhat)
//             SegdistBatchNormGradInput dx = gamma * rstd * (g - sum(g)/M - xhat * sum(g*xhat)/M)
//                                       [and g itself, the residual's gradient]
// with dgamma = sum(g * xhat) and dbeta = sum(g). On wasm the passes are WebAssembly SIMD loops on
// the backend's memory (wasm-simd.ts; channels a multiple of 4), else JS loops over the same data
// (cpu backend, odd channel counts). Measured on wasm for 8x64x64x16: the four kernels take ~1.5 ms
// together with SIMD, ~20 ms with JS loops, vs ~20 stock kernels (~200 ms/step over the whole
// base-16 model). Sums are float64 (SIMD: float32 over chunks of 256 rows, chunks added in float64).
// The statistics and the two gradient sums are separate kernels so that SyncBN can allreduce them
// in between; the message layouts are those of src/models/batch-norm.ts: forward
// [n*mean (C), n*(var + mean^2) (C), n], backward [sum(g) (C), sum(g*xhat) (C)]. dgamma/dbeta stay
// local sums (gradient averaging combines them).
//
// On a backend without these kernels (tfjs-node) the op computes the same thing from stock ops.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  bytesOf, hasKernel, jsKernelConfigs, runKernel, WasmScratch, type JsArray, type TensorInfo,
} from './js-kernels';
import { simdLoops, SUM_CHUNK_ROWS, type SimdLoops } from './wasm-simd';

export const BN_STATS = 'SegdistBatchNormStats';
export const BN_APPLY = 'SegdistBatchNormApply';
export const BN_GRAD_STATS = 'SegdistBatchNormGradStats';
export const BN_GRAD_INPUT = 'SegdistBatchNormGradInput';

/** Sums a Float32Array over all trainers (the models' StatReducer, structurally). */
export interface BatchNormReducer {
  allreduceSum(name: string, data: Float32Array): Float32Array;
}

interface ApplyAttrs { eps: number; relu: boolean }
interface GradInputAttrs { eps: number; relu: boolean; count: number; residual: boolean }

function channelsOf(x: TensorInfo | undefined): number {
  return x!.shape[x!.shape.length - 1];
}

function rstdOf(variance: JsArray, eps: number): Float32Array {
  const r = new Float32Array(variance.length);
  for (let c = 0; c < r.length; c++) r[c] = 1 / Math.sqrt(variance[c] + eps);
  return r;
}

// The loops over the activation live in small functions of their own, each always called with the
// same array types. V8 then optimises them as whole functions after a few calls; written inline in a
// kernel body they only ever ran through on-stack replacement, deoptimised on every call at the code
// after the loop, and ran ~4x slower. ReLU and its mask are computed without a branch (v * (v > 0)):
// about half the signs are random after a BN, and the mispredicted branch made a pass ~3x slower.

function sumChannels(x: Float32Array, numC: number, acc: Float64Array): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) acc[c] += x[i];
  }
}

function sumSquaredDeviations(x: Float32Array, mu: Float64Array, numC: number, acc: Float64Array): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) {
      const d = x[i] - mu[c];
      acc[c] += d * d;
    }
  }
}

function affine(x: Float32Array, y: Float32Array, scale: Float32Array, shift: Float32Array, numC: number): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) y[i] = x[i] * scale[c] + shift[c];
  }
}

function affineRelu(x: Float32Array, y: Float32Array, scale: Float32Array, shift: Float32Array, numC: number): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) {
      const v = x[i] * scale[c] + shift[c];
      y[i] = v * +(v > 0);
    }
  }
}

function affineResidual(x: Float32Array, r: Float32Array, y: Float32Array, scale: Float32Array,
                        shift: Float32Array, numC: number, relu: boolean): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) {
      const v = x[i] * scale[c] + shift[c] + r[i];
      y[i] = relu ? v * +(v > 0) : v;
    }
  }
}

function gradSums(dy: Float32Array, x: Float32Array, mean: Float32Array, numC: number,
                  sg: Float64Array, sgx: Float64Array): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) {
      const g = dy[i];
      sg[c] += g;
      sgx[c] += g * (x[i] - mean[c]);
    }
  }
}

function gradSumsMasked(dy: Float32Array, x: Float32Array, y: Float32Array, mean: Float32Array, numC: number,
                        sg: Float64Array, sgx: Float64Array): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) {
      const g = dy[i] * +(y[i] > 0);
      sg[c] += g;
      sgx[c] += g * (x[i] - mean[c]);
    }
  }
}

function gradInput(dy: Float32Array, x: Float32Array, mean: Float32Array, k: Float32Array, c1: Float32Array,
                   c2: Float32Array, numC: number, dx: Float32Array): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) dx[i] = k[c] * dy[i] - c1[c] - (x[i] - mean[c]) * c2[c];
  }
}

function gradInputMasked(dy: Float32Array, x: Float32Array, y: Float32Array, mean: Float32Array, k: Float32Array,
                         c1: Float32Array, c2: Float32Array, numC: number, dx: Float32Array): void {
  for (let i = 0, n = x.length; i < n;) {
    for (let c = 0; c < numC; c++, i++) {
      const g = dy[i] * +(y[i] > 0);
      dx[i] = k[c] * g - c1[c] - (x[i] - mean[c]) * c2[c];
    }
  }
}

function maskedCopy(dy: Float32Array, y: Float32Array, out: Float32Array): void {
  for (let i = 0, n = dy.length; i < n; i++) out[i] = dy[i] * +(y[i] > 0);
}

type F32 = Record<string, Float32Array>;

// --- wasm paths: the same passes as SIMD loops on the backend's memory (wasm-simd.ts) -------------

interface WasmCtx {
  loops: SimdLoops;
  numC: number;
  rows: number;
  rowBytes: number;
}

/** The SIMD loops and geometry for an NHWC tensor, or null where the JS loops must run instead. */
function wasmCtx(backend: BackendWasm, x: TensorInfo): WasmCtx | null {
  const loops = simdLoops(backend);
  const numC = channelsOf(x);
  if (loops === null || numC % 4 !== 0 || numC === 0) return null;
  let size = 1;
  for (const d of x.shape) size *= d;
  return { loops, numC, rows: size / numC, rowBytes: 4 * numC };
}

function heapF32(backend: BackendWasm, info: TensorInfo, n: number): Float32Array {
  const buffer = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
  return new Float32Array(buffer, bytesOf(backend, info), n);
}

/**
 * Per-channel sums over all rows in chunks of SUM_CHUNK_ROWS: `pass(rowOffsetBytes, rows)` adds one
 * chunk into the float32 accumulators at `accs` (indices into scratch), which are then added into
 * float64 totals.
 */
function chunkedSums(ctx: WasmCtx, scratch: WasmScratch, view: Float32Array, accs: number[],
                     pass: (rowOffsetBytes: number, rows: number) => void): Float64Array[] {
  const totals = accs.map(() => new Float64Array(ctx.numC));
  for (let r0 = 0; r0 < ctx.rows; r0 += SUM_CHUNK_ROWS) {
    for (const a of accs) view.fill(0, a, a + ctx.numC);
    pass(r0 * ctx.rowBytes, Math.min(SUM_CHUNK_ROWS, ctx.rows - r0));
    accs.forEach((a, k) => {
      const t = totals[k];
      for (let c = 0; c < ctx.numC; c++) t[c] += view[a + c];
    });
  }
  return totals;
}

const statsKernel = jsKernelConfigs<Record<string, never>>({
  kernelName: BN_STATS,
  outputs: (inputs) => [
    { shape: [channelsOf(inputs.x)], dtype: 'float32' },
    { shape: [channelsOf(inputs.x)], dtype: 'float32' },
  ],
  compute(ins, [mean, variance]) {
    const x = ins.x as Float32Array;
    const numC = mean.length;
    const rows = x.length / numC;
    const acc = new Float64Array(numC);
    sumChannels(x, numC, acc);
    const mu = new Float64Array(numC);
    for (let c = 0; c < numC; c++) mu[c] = acc[c] / rows;
    acc.fill(0);
    sumSquaredDeviations(x, mu, numC, acc);
    for (let c = 0; c < numC; c++) {
      mean[c] = mu[c];
      variance[c] = acc[c] / rows;
    }
  },
  computeWasm(backend, inputs, [meanInfo, varInfo]) {
    const ctx = wasmCtx(backend, inputs.x!);
    if (ctx === null) return false;
    const { loops, numC, rows, rowBytes } = ctx;
    const x = bytesOf(backend, inputs.x!);
    const scratch = new WasmScratch(backend, 2 * numC); // [acc, mean]
    try {
      const view = scratch.f32();
      const [sum] = chunkedSums(ctx, scratch, view, [0], (off, n) => loops.sum(x + off, n, rowBytes, scratch.at(0)));
      for (let c = 0; c < numC; c++) view[numC + c] = sum[c] / rows;
      const [sq] = chunkedSums(ctx, scratch, view, [0],
                               (off, n) => loops.sqdev(x + off, n, rowBytes, scratch.at(numC), scratch.at(0)));
      const mean = heapF32(backend, meanInfo, numC);
      const variance = heapF32(backend, varInfo, numC);
      for (let c = 0; c < numC; c++) {
        mean[c] = view[numC + c];
        variance[c] = sq[c] / rows;
      }
    } finally {
      scratch.release();
    }
    return true;
  },
});

const applyKernel = jsKernelConfigs<ApplyAttrs>({
  kernelName: BN_APPLY,
  outputs: (inputs) => [{ shape: [...inputs.x!.shape], dtype: 'float32' }],
  compute(ins, outs, { eps, relu }) {
    const { x, mean, variance, gamma, beta, residual } = ins as F32;
    const y = outs[0] as Float32Array;
    const numC = mean.length;
    const rstd = rstdOf(variance, eps);
    const scale = new Float32Array(numC);
    const shift = new Float32Array(numC);
    for (let c = 0; c < numC; c++) {
      scale[c] = gamma[c] * rstd[c];
      shift[c] = beta[c] - mean[c] * scale[c];
    }
    if (residual !== undefined) affineResidual(x, residual, y, scale, shift, numC, relu);
    else if (relu) affineRelu(x, y, scale, shift, numC);
    else affine(x, y, scale, shift, numC);
  },
  computeWasm(backend, inputs, [yInfo], { eps, relu }) {
    const ctx = wasmCtx(backend, inputs.x!);
    if (ctx === null) return false;
    const { loops, numC, rows, rowBytes } = ctx;
    const scratch = new WasmScratch(backend, 2 * numC); // [scale, shift]
    try {
      const view = scratch.f32();
      const mean = heapF32(backend, inputs.mean!, numC);
      const rstd = rstdOf(heapF32(backend, inputs.variance!, numC), eps);
      const gamma = heapF32(backend, inputs.gamma!, numC);
      const beta = heapF32(backend, inputs.beta!, numC);
      for (let c = 0; c < numC; c++) {
        const scale = Math.fround(gamma[c] * rstd[c]);
        view[c] = scale;
        view[numC + c] = beta[c] - mean[c] * scale;
      }
      const x = bytesOf(backend, inputs.x!);
      const y = bytesOf(backend, yInfo);
      const [sc, sh] = [scratch.at(0), scratch.at(numC)];
      if (inputs.residual !== undefined) {
        const r = bytesOf(backend, inputs.residual);
        if (relu) loops.affineResRelu(x, r, y, rows, rowBytes, sc, sh);
        else loops.affineRes(x, r, y, rows, rowBytes, sc, sh);
      } else if (relu) {
        loops.affineRelu(x, y, rows, rowBytes, sc, sh);
      } else {
        loops.affine(x, y, rows, rowBytes, sc, sh);
      }
    } finally {
      scratch.release();
    }
    return true;
  },
});

const gradStatsKernel = jsKernelConfigs<ApplyAttrs>({
  kernelName: BN_GRAD_STATS,
  outputs: (inputs) => [
    { shape: [channelsOf(inputs.x)], dtype: 'float32' },
    { shape: [channelsOf(inputs.x)], dtype: 'float32' },
  ],
  compute(ins, [sumG, sumGXhat], { eps, relu }) {
    const { dy, x, y, mean, variance } = ins as F32;
    const numC = mean.length;
    const rstd = rstdOf(variance, eps);
    const sg = new Float64Array(numC);
    const sgx = new Float64Array(numC);
    if (relu) gradSumsMasked(dy, x, y, mean, numC, sg, sgx);
    else gradSums(dy, x, mean, numC, sg, sgx);
    for (let c = 0; c < numC; c++) {
      sumG[c] = sg[c];
      sumGXhat[c] = sgx[c] * rstd[c];
    }
  },
  computeWasm(backend, inputs, [sumGInfo, sumGXhatInfo], { eps, relu }) {
    const ctx = wasmCtx(backend, inputs.x!);
    if (ctx === null) return false;
    const { loops, numC, rowBytes } = ctx;
    const scratch = new WasmScratch(backend, 2 * numC); // [sg, sgx]
    try {
      const view = scratch.f32();
      const dy = bytesOf(backend, inputs.dy!);
      const x = bytesOf(backend, inputs.x!);
      const y = bytesOf(backend, inputs.y!);
      const mean = bytesOf(backend, inputs.mean!);
      const [sg, sgx] = chunkedSums(ctx, scratch, view, [0, numC], (off, n) => {
        if (relu) loops.gsumsRelu(dy + off, x + off, y + off, n, rowBytes, mean, scratch.at(0), scratch.at(numC));
        else loops.gsums(dy + off, x + off, n, rowBytes, mean, scratch.at(0), scratch.at(numC));
      });
      const rstd = rstdOf(heapF32(backend, inputs.variance!, numC), eps);
      const sumG = heapF32(backend, sumGInfo, numC);
      const sumGXhat = heapF32(backend, sumGXhatInfo, numC);
      for (let c = 0; c < numC; c++) {
        sumG[c] = sg[c];
        sumGXhat[c] = sgx[c] * rstd[c];
      }
    } finally {
      scratch.release();
    }
    return true;
  },
});

const gradInputKernel = jsKernelConfigs<GradInputAttrs>({
  kernelName: BN_GRAD_INPUT,
  outputs: (inputs, attrs) => {
    const out: { shape: number[]; dtype: 'float32' }[] = [{ shape: [...inputs.x!.shape], dtype: 'float32' }];
    if (attrs.residual) out.push({ shape: [...inputs.x!.shape], dtype: 'float32' });
    return out;
  },
  compute(ins, outs, { eps, relu, count }) {
    const { dy, x, y, mean, variance, gamma, sumG, sumGXhat } = ins as F32;
    const dx = outs[0] as Float32Array;
    const numC = mean.length;
    const rstd = rstdOf(variance, eps);
    // dx = k*g - c1 - (x - mean) * c2, k = gamma*rstd, c1 = k*sum(g)/M, c2 = k*rstd*sum(g*xhat)/M
    const k = new Float32Array(numC);
    const c1 = new Float32Array(numC);
    const c2 = new Float32Array(numC);
    for (let c = 0; c < numC; c++) {
      k[c] = gamma[c] * rstd[c];
      c1[c] = (k[c] * sumG[c]) / count;
      c2[c] = (k[c] * rstd[c] * sumGXhat[c]) / count;
    }
    if (relu) gradInputMasked(dy, x, y, mean, k, c1, c2, numC, dx);
    else gradInput(dy, x, mean, k, c1, c2, numC, dx);
    if (outs.length > 1) {
      const dres = outs[1] as Float32Array;
      if (relu) maskedCopy(dy, y, dres);
      else dres.set(dy);
    }
  },
  computeWasm(backend, inputs, outs, { eps, relu, count }) {
    const ctx = wasmCtx(backend, inputs.x!);
    if (ctx === null) return false;
    const { loops, numC, rows, rowBytes } = ctx;
    const scratch = new WasmScratch(backend, 3 * numC); // [k, c1, c2]
    try {
      const view = scratch.f32();
      const rstd = rstdOf(heapF32(backend, inputs.variance!, numC), eps);
      const gamma = heapF32(backend, inputs.gamma!, numC);
      const sumG = heapF32(backend, inputs.sumG!, numC);
      const sumGXhat = heapF32(backend, inputs.sumGXhat!, numC);
      for (let c = 0; c < numC; c++) {
        const k = Math.fround(gamma[c] * rstd[c]);
        view[c] = k;
        view[numC + c] = (k * sumG[c]) / count;
        view[2 * numC + c] = (k * rstd[c] * sumGXhat[c]) / count;
      }
      const dy = bytesOf(backend, inputs.dy!);
      const x = bytesOf(backend, inputs.x!);
      const y = bytesOf(backend, inputs.y!);
      const dx = bytesOf(backend, outs[0]);
      const mean = bytesOf(backend, inputs.mean!);
      const [k, c1, c2] = [scratch.at(0), scratch.at(numC), scratch.at(2 * numC)];
      if (relu) loops.ginputRelu(dy, x, y, dx, rows, rowBytes, mean, k, c1, c2);
      else loops.ginput(dy, x, dx, rows, rowBytes, mean, k, c1, c2);
      if (outs.length > 1) {
        const dres = bytesOf(backend, outs[1]);
        if (relu) {
          loops.mask(dy, y, dres, rows, rowBytes);
        } else {
          const heap = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8;
          heap.copyWithin(dres, dy, dy + rows * rowBytes);
        }
      }
    } finally {
      scratch.release();
    }
    return true;
  },
});

/** The kernel configs of this file, for each JS-kernel backend. */
export const batchNormKernelConfigs: tf.KernelConfig[] =
    [...statsKernel, ...applyKernel, ...gradStatsKernel, ...gradInputKernel];

export interface BatchNormTrainOptions {
  /** Added to the variance; PyTorch's 1e-5. */
  eps: number;
  /** Apply ReLU to the result (after the residual add). */
  relu?: boolean;
  /** Added to the normalised result before the ReLU (a ResNet block's shortcut); gets a gradient. */
  residual?: tf.Tensor4D;
  /** SyncBN: statistics over all trainers. `name` identifies the collectives (`<name>/fwd`, `/bwd`). */
  reducer?: BatchNormReducer;
  name?: string;
}

export interface BatchNormTrainResult {
  /** act(gamma * (x - mean) / sqrt(var + eps) + beta [+ residual]), differentiable. */
  y: tf.Tensor4D;
  /** Batch mean and biased batch variance (global under SyncBN); no gradient. */
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
  /** Elements per channel the statistics cover (global under SyncBN). */
  count: number;
}

const AXES = [0, 1, 2];

function useKernels(): boolean {
  return hasKernel(BN_STATS) && hasKernel(BN_APPLY) && hasKernel(BN_GRAD_STATS) && hasKernel(BN_GRAD_INPUT);
}

function localStats(x: tf.Tensor4D, kernels: boolean): [tf.Tensor1D, tf.Tensor1D] {
  if (kernels) return runKernel(BN_STATS, { x }) as [tf.Tensor1D, tf.Tensor1D];
  return tf.tidy(() => {
    const mean = tf.mean(x, AXES) as tf.Tensor1D;
    return [mean, tf.mean(tf.square(tf.sub(x, mean)), AXES) as tf.Tensor1D];
  });
}

function syncStats(mean: tf.Tensor1D, variance: tf.Tensor1D, localCount: number,
                   reducer: BatchNormReducer, name: string): [tf.Tensor1D, tf.Tensor1D, number] {
  const numC = mean.shape[0];
  const m = mean.dataSync();
  const v = variance.dataSync();
  const msg = new Float32Array(2 * numC + 1);
  for (let i = 0; i < numC; i++) {
    msg[i] = localCount * m[i];
    msg[numC + i] = localCount * (v[i] + m[i] * m[i]);
  }
  msg[2 * numC] = localCount;
  const sums = reducer.allreduceSum(`${name}/fwd`, msg);
  if (sums.length !== msg.length) {
    throw new Error(`Error in SyncBN '${name}': reducer returned ${sums.length} values, expected ${msg.length}`);
  }
  const count = sums[2 * numC];
  const gm = new Float32Array(numC);
  const gv = new Float32Array(numC);
  for (let i = 0; i < numC; i++) {
    const mu = sums[i] / count;
    gm[i] = mu;
    gv[i] = Math.max(sums[numC + i] / count - mu * mu, 0);
  }
  return [tf.tensor1d(gm), tf.tensor1d(gv), count];
}

function syncGradSums(sumG: tf.Tensor, sumGXhat: tf.Tensor, reducer: BatchNormReducer,
                      name: string): [tf.Tensor1D, tf.Tensor1D] {
  const numC = sumG.shape[0];
  const local = new Float32Array(2 * numC);
  local.set(sumG.dataSync() as Float32Array, 0);
  local.set(sumGXhat.dataSync() as Float32Array, numC);
  const sums = reducer.allreduceSum(`${name}/bwd`, local);
  if (sums.length !== local.length) {
    throw new Error(`Error in SyncBN '${name}': reducer returned ${sums.length} values, expected ${local.length}`);
  }
  return [tf.tensor1d(sums.slice(0, numC)), tf.tensor1d(sums.slice(numC))];
}

/** The same forward and gradient from stock ops, for backends without our kernels. */
function applyStock(x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor,
                    residual: tf.Tensor | undefined, eps: number, relu: boolean): tf.Tensor {
  return tf.tidy(() => {
    const scale = tf.mul(gamma, tf.rsqrt(tf.add(variance, eps)));
    let y = tf.add(tf.mul(x, scale), tf.sub(beta, tf.mul(mean, scale)));
    if (residual !== undefined) y = tf.add(y, residual);
    return relu ? tf.relu(y) : y;
  });
}

function gradStatsStock(dy: tf.Tensor, x: tf.Tensor, y: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor,
                        eps: number, relu: boolean): [tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const g = relu ? tf.mul(dy, tf.cast(tf.greater(y, 0), 'float32')) : dy;
    const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
    return [tf.sum(g, AXES), tf.sum(tf.mul(g, xhat), AXES)];
  });
}

function gradInputStock(dy: tf.Tensor, x: tf.Tensor, y: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor,
                        gamma: tf.Tensor, sumG: tf.Tensor, sumGXhat: tf.Tensor, a: GradInputAttrs): tf.Tensor[] {
  return tf.tidy(() => {
    const g = a.relu ? tf.mul(dy, tf.cast(tf.greater(y, 0), 'float32')) : dy;
    const rstd = tf.rsqrt(tf.add(variance, a.eps));
    const k = tf.mul(gamma, rstd);
    const c1 = tf.mul(k, tf.div(sumG, a.count));
    const c2 = tf.mul(tf.mul(k, rstd), tf.div(sumGXhat, a.count));
    const dx = tf.sub(tf.sub(tf.mul(g, k), c1), tf.mul(tf.sub(x, mean), c2));
    return a.residual ? [dx, g] : [dx];
  });
}

/**
 * PyTorch's training-mode BatchNorm2d on an NHWC tensor, with an optional residual add and ReLU fused
 * in: y = act(gamma * (x - mean) / sqrt(var + eps) + beta [+ residual]). Returns y (with a gradient
 * for x, gamma, beta and residual) and the batch statistics, which the caller uses to update its
 * running mean and variance (unbiased variance = variance * count / (count - 1)).
 */
export function batchNormTrain(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D,
                               opts: BatchNormTrainOptions): BatchNormTrainResult {
  const numC = x.shape[3];
  if (gamma.shape[0] !== numC || beta.shape[0] !== numC) {
    throw new Error(`Error in batchNormTrain: x has ${numC} channels, gamma ${gamma.shape[0]}, beta ${beta.shape[0]}`);
  }
  if (opts.residual !== undefined && opts.residual.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`Error in batchNormTrain: residual shape [${opts.residual.shape}] differs from x [${x.shape}]`);
  }
  const eps = opts.eps;
  const relu = opts.relu ?? false;
  const reducer = opts.reducer;
  const name = opts.name ?? 'batch_norm';
  const kernels = useKernels();
  let count = x.size / numC;
  let [mean, variance] = localStats(x, kernels);
  if (reducer !== undefined) {
    const [gm, gv, c] = syncStats(mean, variance, count, reducer, name);
    tf.dispose([mean, variance]);
    [mean, variance, count] = [gm, gv, c];
  }
  if (count < 2) {
    tf.dispose([mean, variance]);
    // PyTorch refuses too; the variance of one value is meaningless and the unbiased one divides by 0.
    throw new Error(`Error in batchNormTrain '${name}': expected more than 1 value per channel when training`);
  }
  const hasResidual = opts.residual !== undefined;
  const gradAttrs: GradInputAttrs = { eps, relu, count, residual: hasResidual };

  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [xIn, g, b, res] = args as tf.Tensor[];
    const y = kernels ?
        runKernel(BN_APPLY, { x: xIn, mean, variance, gamma: g, beta: b, residual: hasResidual ? res : undefined },
                  { eps, relu })[0] :
        applyStock(xIn, mean, variance, g, b, hasResidual ? res : undefined, eps, relu);
    save([xIn, y, mean, variance, g]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const [sx, sy, sMean, sVar, sGamma] = saved;
      let [sumG, sumGXhat] = kernels ?
          runKernel(BN_GRAD_STATS, { dy, x: sx, y: sy, mean: sMean, variance: sVar }, { eps, relu }) :
          gradStatsStock(dy, sx, sy, sMean, sVar, eps, relu);
      const localSumG = sumG;
      const localSumGXhat = sumGXhat;
      if (reducer !== undefined) [sumG, sumGXhat] = syncGradSums(sumG, sumGXhat, reducer, name);
      const outs = kernels ?
          runKernel(BN_GRAD_INPUT, { dy, x: sx, y: sy, mean: sMean, variance: sVar, gamma: sGamma, sumG, sumGXhat },
                    gradAttrs) :
          gradInputStock(dy, sx, sy, sMean, sVar, sGamma, sumG, sumGXhat, gradAttrs);
      if (reducer !== undefined) tf.dispose([sumG, sumGXhat]);
      return hasResidual ? [outs[0], localSumGXhat, localSumG, outs[1]] : [outs[0], localSumGXhat, localSumG];
    };
    return { value: y, gradFunc };
  });
  const inputs: tf.Tensor[] = hasResidual ? [x, gamma, beta, opts.residual!] : [x, gamma, beta];
  const y = op(...inputs) as tf.Tensor4D;
  return { y, mean, variance, count };
}

/**
 * Eval-mode batch norm with the same fusions: y = act(gamma * (x - mean) / sqrt(var + eps) + beta
 * [+ residual]) with given (running) statistics. One kernel on wasm/cpu; no custom gradient (use it
 * for inference).
 */
export function batchNormInfer(x: tf.Tensor4D, mean: tf.Tensor1D, variance: tf.Tensor1D, gamma: tf.Tensor1D,
                               beta: tf.Tensor1D, opts: { eps: number; relu?: boolean; residual?: tf.Tensor4D }):
    tf.Tensor4D {
  const relu = opts.relu ?? false;
  if (hasKernel(BN_APPLY)) {
    return runKernel(BN_APPLY, { x, mean, variance, gamma, beta, residual: opts.residual },
                     { eps: opts.eps, relu })[0] as tf.Tensor4D;
  }
  return applyStock(x, mean, variance, gamma, beta, opts.residual, opts.eps, relu) as tf.Tensor4D;
}
