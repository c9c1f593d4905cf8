// Pixelwise softmax cross-entropy with an ignore index, as one forward and one backward kernel (JS
// loops; on wasm the exponentials are one WebAssembly SIMD pass, wasm-simd.ts expInPlace).
//
// The composed version (src/train/cross-entropy.ts: logSoftmax, oneHot, where, masks, sums) is ~20
// kernels over the full-resolution logits, twice per step (main and auxiliary head), and its Exp
// alone cost ~2% of a base-16 step on wasm. Forward here is one pass computing the loss and keeping
// the softmax probabilities; backward is one pass: dlogits = dloss * (p - onehot) / count on pixels
// whose label is not ignored.
//
// Semantics are PyTorch's CrossEntropyLoss(ignore_index, reduction='mean') as cross-entropy.ts has
// them: the mean over pixels whose label is not `ignoreIndex`; a label outside [0, C) that is not
// ignored counts in the denominator but adds no loss and no gradient (oneHot gives it a zero row);
// a batch with no counted pixel gives 0.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { bytesOf, hasKernel, jsKernelConfigs, runKernel } from './js-kernels';
import { simdLoops } from './wasm-simd';

export const CE_FORWARD = 'SegdistSoftmaxCrossEntropy';
export const CE_BACKWARD = 'SegdistSoftmaxCrossEntropyGrad';

interface CeAttrs { ignoreIndex: number }

// The loops are functions of their own, always called with the same array types, so that V8
// optimises them whole (inline in a kernel body they ran ~4x slower, see batch-norm.ts).

// 2^k for k in [-160, 39], as doubles.
const POW2 = Float64Array.from({ length: 200 }, (_, i) => Math.pow(2, i - 160));
const INV_LN2 = 1 / Math.LN2;

/**
 * exp(v) for v <= 0 (a logit minus its row's maximum), ~2x faster than Math.exp here: v = k ln2 + r
 * with |r| <= ln2/2, exp(r) by its Taylor series to r^7 (relative error < 1e-8, below float32's
 * resolution), 2^k from a table. Below -103 the result is under float32's smallest subnormal: 0.
 */
function expNonPositive(v: number): number {
  if (!(v >= -103)) return v !== v ? v : 0; // NaN stays NaN
  const k = (v * INV_LN2 - 0.5) | 0; // round to nearest for v <= 0
  const r = v - k * Math.LN2;
  const p = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (1 / 5040)))))));
  return p * POW2[k + 160];
}

/** The largest of logits[i .. i + numC): a pixel's logits are shifted by it before exp. */
function rowMax(logits: Float32Array, i: number, numC: number): number {
  let max = -Infinity;
  for (let c = 0; c < numC; c++) max = Math.max(max, logits[i + c]);
  return max;
}

/** Writes softmax(logits) per pixel into probs; returns [sum of losses, counted pixels]. */
function softmaxLoss(logits: Float32Array, labels: Int32Array, probs: Float32Array, numC: number,
                     ignoreIndex: number, out: Float64Array): void {
  let total = 0;
  let count = 0;
  for (let p = 0, i = 0, pixels = labels.length; p < pixels; p++, i += numC) {
    const max = rowMax(logits, i, numC);
    let sum = 0;
    for (let c = 0; c < numC; c++) {
      const e = expNonPositive(logits[i + c] - max);
      probs[i + c] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let c = 0; c < numC; c++) probs[i + c] *= inv;
    const label = labels[p];
    if (label !== ignoreIndex) {
      count++;
      if (label >= 0 && label < numC) total += max + Math.log(sum) - logits[i + label];
    }
  }
  out[0] = total;
  out[1] = count;
}

// The wasm path: the exponentials as one SIMD pass (wasm-simd.ts expInPlace) between two JS passes.

/**
 * Pass 1: shifted[i] = logits[i] - max of its pixel; returns sum over counted pixels of
 * -(shifted logit of the label) in out[0] and the number of counted pixels in out[1].
 */
function shiftByMax(logits: Float32Array, labels: Int32Array, shifted: Float32Array, numC: number,
                    ignoreIndex: number, out: Float64Array): void {
  let total = 0;
  let count = 0;
  for (let p = 0, i = 0, pixels = labels.length; p < pixels; p++, i += numC) {
    const max = rowMax(logits, i, numC);
    for (let c = 0; c < numC; c++) shifted[i + c] = logits[i + c] - max;
    const label = labels[p];
    if (label !== ignoreIndex) {
      count++;
      if (label >= 0 && label < numC) total -= shifted[i + label];
    }
  }
  out[0] = total;
  out[1] = count;
}

/**
 * Pass 2: e holds exp(shifted); normalise each pixel; returns the sum of log(sum) over pixels that
 * add to the loss (counted, with a label in range).
 */
function normalise(e: Float32Array, labels: Int32Array, numC: number, ignoreIndex: number): number {
  let total = 0;
  for (let p = 0, i = 0, pixels = labels.length; p < pixels; p++, i += numC) {
    let sum = 0;
    for (let c = 0; c < numC; c++) sum += e[i + c];
    const inv = 1 / sum;
    for (let c = 0; c < numC; c++) e[i + c] *= inv;
    const label = labels[p];
    if (label !== ignoreIndex && label >= 0 && label < numC) total += Math.log(sum);
  }
  return total;
}

function countCounted(labels: Int32Array, ignoreIndex: number): number {
  let count = 0;
  for (let p = 0, n = labels.length; p < n; p++) count += +(labels[p] !== ignoreIndex);
  return count;
}

function softmaxLossGrad(probs: Float32Array, labels: Int32Array, dlogits: Float32Array, numC: number,
                         ignoreIndex: number, scale: number): void {
  for (let p = 0, i = 0, pixels = labels.length; p < pixels; p++, i += numC) {
    const label = labels[p];
    if (label === ignoreIndex || !(label >= 0 && label < numC)) {
      for (let c = 0; c < numC; c++) dlogits[i + c] = 0;
    } else {
      for (let c = 0; c < numC; c++) dlogits[i + c] = scale * probs[i + c];
      dlogits[i + label] -= scale;
    }
  }
}

const forwardKernel = jsKernelConfigs<CeAttrs>({
  kernelName: CE_FORWARD,
  outputs: (inputs) => [
    { shape: [], dtype: 'float32' },
    { shape: [...inputs.logits!.shape], dtype: 'float32' },
  ],
  compute(ins, [loss, probs], { ignoreIndex }) {
    const labels = ins.labels as Int32Array;
    const numC = ins.logits!.length / labels.length;
    const sums = new Float64Array(2);
    softmaxLoss(ins.logits as Float32Array, labels, probs as Float32Array, numC, ignoreIndex, sums);
    loss[0] = sums[1] > 0 ? sums[0] / sums[1] : 0;
  },
  computeWasm(backend: BackendWasm, inputs, [lossInfo, probsInfo], { ignoreIndex }) {
    const loops = simdLoops(backend);
    if (loops === null) return false;
    const buffer = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
    const n = inputs.logits!.shape.reduce((a, b) => a * b, 1);
    const pixels = inputs.labels!.shape.reduce((a, b) => a * b, 1);
    const numC = n / pixels;
    const logits = new Float32Array(buffer, bytesOf(backend, inputs.logits!), n);
    const labels = new Int32Array(buffer, bytesOf(backend, inputs.labels!), pixels);
    const probs = new Float32Array(buffer, bytesOf(backend, probsInfo), n);
    const sums = new Float64Array(2);
    shiftByMax(logits, labels, probs, numC, ignoreIndex, sums);
    const vectorised = n & ~3;
    loops.expInPlace(bytesOf(backend, probsInfo), vectorised);
    for (let i = vectorised; i < n; i++) probs[i] = Math.exp(probs[i]);
    const total = sums[0] + normalise(probs, labels, numC, ignoreIndex);
    new Float32Array(buffer, bytesOf(backend, lossInfo), 1)[0] = sums[1] > 0 ? total / sums[1] : 0;
    return true;
  },
});

const backwardKernel = jsKernelConfigs<CeAttrs>({
  kernelName: CE_BACKWARD,
  outputs: (inputs) => [{ shape: [...inputs.probs!.shape], dtype: 'float32' }],
  compute(ins, [dlogits], { ignoreIndex }) {
    const labels = ins.labels as Int32Array;
    const numC = ins.probs!.length / labels.length;
    const count = countCounted(labels, ignoreIndex);
    const scale = count > 0 ? ins.dy![0] / count : 0;
    softmaxLossGrad(ins.probs as Float32Array, labels, dlogits as Float32Array, numC, ignoreIndex, scale);
  },
});

export const crossEntropyKernelConfigs: tf.KernelConfig[] = [...forwardKernel, ...backwardKernel];

/** The same loss from stock ops: for backends without our kernels, and the tests' reference. */
export function crossEntropyStock(logits: tf.Tensor4D, labels: tf.Tensor3D, ignoreIndex: number): tf.Scalar {
  return tf.tidy(() => {
    const numClasses = logits.shape[3];
    const valid = tf.notEqual(labels, ignoreIndex);
    const safeLabels = tf.where(valid, labels, tf.zerosLike(labels));
    const oneHot = tf.oneHot(safeLabels, numClasses) as tf.Tensor4D;
    const logp = tf.logSoftmax(logits, -1);
    const nll = tf.neg(tf.sum(tf.mul(logp, oneHot), -1));
    const mask = tf.cast(valid, 'float32');
    const count = tf.maximum(tf.sum(mask), 1);
    return tf.div(tf.sum(tf.mul(nll, mask)), count) as tf.Scalar;
  });
}

/**
 * Mean softmax cross-entropy over the pixels whose label is not `ignoreIndex`. logits: float32
 * [N, H, W, C]; labels: int32 [N, H, W]. Differentiable in logits.
 */
export function softmaxCrossEntropy(logits: tf.Tensor4D, labels: tf.Tensor3D, ignoreIndex: number): tf.Scalar {
  const [n, h, w] = logits.shape;
  if (labels.rank !== 3 || labels.shape[0] !== n || labels.shape[1] !== h || labels.shape[2] !== w) {
    throw new Error(`Error in softmaxCrossEntropy: labels [${labels.shape}] do not match logits [${logits.shape}]`);
  }
  if (labels.dtype !== 'int32') {
    throw new Error(`Error in softmaxCrossEntropy: labels must be int32, got ${labels.dtype}`);
  }
  if (!hasKernel(CE_FORWARD) || !hasKernel(CE_BACKWARD)) return crossEntropyStock(logits, labels, ignoreIndex);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor4D;
    const save = args[1] as tf.GradSaveFunc;
    const [loss, probs] = runKernel(CE_FORWARD, { logits: input, labels }, { ignoreIndex });
    save([probs, labels]);
    return {
      value: loss,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        runKernel(CE_BACKWARD, { dy, probs: saved[0], labels: saved[1] }, { ignoreIndex })[0],
    };
  });
  return op(logits) as tf.Scalar;
}
