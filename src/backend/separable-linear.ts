// Separable linear maps over the spatial axes of an NHWC tensor,
//   y[n, i, j, c] = sum_{h, w} A[i, h] * B[j, w] * x[n, h, w, c],
// as one JS kernel that walks the non-zeros of A and B. Bilinear resizing and adaptive average
// pooling are of this form with sparse A, B (2 taps per row for interpolation).
//
// Why: src/models computes the map (and its adjoint, the gradient of every resize and pooling) as
// two batched matmuls with dense A, B. For the final 16 -> 128 upsampling of 5-class logits that is
// a [16 x 128] @ [128 x 640] per image, which the wasm BatchMatMul runs at well under 1 GFLOP/s
// (~30 ms for the adjoint, ~2.5% of a base-16 step); walking the non-zeros takes ~3 ms. Results
// equal the dense map's up to float rounding (zero products are skipped, the order of the sums is
// the same per output).
import * as tf from '@tensorflow/tfjs';
import { hasKernel, jsKernelConfigs, runKernel } from './js-kernels';

export const SEPARABLE_LINEAR = 'SegdistSeparableLinear';

/** A dense row-major matrix held in JS (src/models' Matrix). */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float32Array;
}

/** Non-zeros of a matrix by row: entries start[r] .. start[r+1]-1 of index/weight. */
interface SparseRows {
  rows: number;
  cols: number;
  start: Int32Array;
  index: Int32Array;
  weight: Float32Array;
}

const sparseCache = new WeakMap<Matrix, SparseRows>();

function sparse(m: Matrix): SparseRows {
  let s = sparseCache.get(m);
  if (s !== undefined) return s;
  const start = new Int32Array(m.rows + 1);
  let nnz = 0;
  for (let i = 0; i < m.data.length; i++) if (m.data[i] !== 0) nnz++;
  const index = new Int32Array(nnz);
  const weight = new Float32Array(nnz);
  let k = 0;
  for (let r = 0; r < m.rows; r++) {
    start[r] = k;
    for (let c = 0; c < m.cols; c++) {
      const v = m.data[r * m.cols + c];
      if (v !== 0) {
        index[k] = c;
        weight[k++] = v;
      }
    }
  }
  start[m.rows] = k;
  s = { rows: m.rows, cols: m.cols, start, index, weight };
  sparseCache.set(m, s);
  return s;
}

export function transposeMatrix(m: Matrix): Matrix {
  const data = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; c++) data[c * m.rows + r] = m.data[r * m.cols + c];
  }
  return { rows: m.cols, cols: m.rows, data };
}

// The loops are functions of their own so that V8 optimises them whole (see batch-norm.ts).

/** out[(n, h, j)] = sum_w B[j, w] * x[(n, h, w)] over vectors of `c` floats; out zeroed first. */
function mapColumns(x: Float32Array, out: Float32Array, b: SparseRows, outer: number, c: number): void {
  const w = b.cols;
  const ow = b.rows;
  out.fill(0);
  for (let o = 0; o < outer; o++) {
    const xBase = o * w * c;
    for (let j = 0; j < ow; j++) {
      const dst = (o * ow + j) * c;
      for (let k = b.start[j]; k < b.start[j + 1]; k++) {
        const src = xBase + b.index[k] * c;
        const a = b.weight[k];
        for (let e = 0; e < c; e++) out[dst + e] += a * x[src + e];
      }
    }
  }
}

/** out[(n, i)] = sum_h A[i, h] * x[(n, h)] over rows of `len` floats; out zeroed first. */
function mapRows(x: Float32Array, out: Float32Array, a: SparseRows, batch: number, len: number): void {
  const h = a.cols;
  const oh = a.rows;
  out.fill(0);
  for (let n = 0; n < batch; n++) {
    for (let i = 0; i < oh; i++) {
      const dst = (n * oh + i) * len;
      for (let k = a.start[i]; k < a.start[i + 1]; k++) {
        const src = (n * h + a.index[k]) * len;
        const wgt = a.weight[k];
        for (let e = 0; e < len; e++) out[dst + e] += wgt * x[src + e];
      }
    }
  }
}

interface SeparableAttrs {
  rows: Matrix;
  cols: Matrix;
}

const separableKernel = jsKernelConfigs<SeparableAttrs>({
  kernelName: SEPARABLE_LINEAR,
  outputs: (inputs, { rows, cols }) => {
    const [n, , , c] = inputs.x!.shape;
    return [{ shape: [n, rows.rows, cols.rows, c], dtype: 'float32' }];
  },
  compute(ins, [y], { rows, cols }, inputs) {
    const x = ins.x as Float32Array;
    const [n, h, w, c] = inputs.x!.shape;
    const a = sparse(rows);
    const b = sparse(cols);
    const oh = a.rows;
    const ow = b.rows;
    // Columns first ([n, h, ow, c] in between) or rows first ([n, oh, w, c]), whichever costs less:
    // each non-zero costs a fixed overhead plus its vector length (c floats for a column tap, a
    // whole row for a row tap), so the long row passes are cheap per multiply-add.
    let nnzA = 0;
    let nnzB = 0;
    for (let i = 0; i < oh; i++) nnzA += a.start[i + 1] - a.start[i];
    for (let j = 0; j < ow; j++) nnzB += b.start[j + 1] - b.start[j];
    const TAP = 8;
    const costColsFirst = n * h * nnzB * (TAP + c) + n * nnzA * (TAP + ow * c);
    const costRowsFirst = n * nnzA * (TAP + w * c) + n * oh * nnzB * (TAP + c);
    if (costColsFirst <= costRowsFirst) {
      const t = new Float32Array(n * h * ow * c);
      mapColumns(x, t, b, n * h, c);
      mapRows(t, y as Float32Array, a, n, ow * c);
    } else {
      const t = new Float32Array(n * oh * w * c);
      mapRows(x, t, a, n, w * c);
      mapColumns(t, y as Float32Array, b, n * oh, c);
    }
  },
});

export const separableKernelConfigs: tf.KernelConfig[] = separableKernel;

/** The dense two-matmul version (src/models' apply), for backends without our kernel. */
function applyStock(x: tf.Tensor4D, a: Matrix, b: Matrix): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const oh = a.rows;
  const ow = b.rows;
  return tf.tidy(() => {
    const am = tf.tensor3d(a.data, [1, oh, h]);
    const bm = tf.tensor3d(b.data, [1, ow, w]);
    const t = tf.matMul(am, tf.reshape(x, [n, h, w * c]));
    const y = tf.matMul(bm, tf.reshape(t, [n * oh, w, c]));
    return tf.reshape(y, [n, oh, ow, c]);
  });
}

/** y = A x B^T per image and channel, no gradient of its own. A: [outH, H], B: [outW, W]. */
export function separableMap(x: tf.Tensor4D, rows: Matrix, cols: Matrix): tf.Tensor4D {
  const [, h, w] = x.shape;
  if (rows.cols !== h || cols.cols !== w) {
    throw new Error(`Error in separableMap: matrices [${rows.rows}x${rows.cols}], [${cols.rows}x${cols.cols}] ` +
      `do not fit an input of ${h}x${w}`);
  }
  if (!hasKernel(SEPARABLE_LINEAR)) return applyStock(x, rows, cols);
  return runKernel(SEPARABLE_LINEAR, { x }, { rows, cols })[0] as tf.Tensor4D;
}

/**
 * Runs `forward` (any op equal to y = A x B^T, e.g. a native resize kernel) with the exact adjoint
 * dx = A^T dy B as its gradient.
 */
export function withSeparableGradient(x: tf.Tensor4D, forward: (x: tf.Tensor4D) => tf.Tensor4D,
                                      rows: Matrix, cols: Matrix): tf.Tensor4D {
  const [, h, w] = x.shape;
  if (rows.cols !== h || cols.cols !== w) {
    throw new Error(`Error in withSeparableGradient: matrices [${rows.rows}x${rows.cols}], ` +
      `[${cols.rows}x${cols.cols}] do not fit an input of ${h}x${w}`);
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor4D;
    return {
      value: forward(input),
      gradFunc: (dy: tf.Tensor) => separableMap(dy as tf.Tensor4D, transposeMatrix(rows), transposeMatrix(cols)),
    };
  });
  return op(x) as tf.Tensor4D;
}

/** y = A x B^T per image and channel, differentiable (the gradient is the same map with A^T, B^T). */
export function separableLinear(x: tf.Tensor4D, rows: Matrix, cols: Matrix): tf.Tensor4D {
  return withSeparableGradient(x, (t) => separableMap(t, rows, cols), rows, cols);
}
