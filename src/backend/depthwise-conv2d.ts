// A depthwise (one filter per channel) 2-D convolution, NHWC, stride 1, any dilation, with a
// gradient of our own on every backend.
//
// Why our own gradient: tfjs's DepthwiseConv2dNative gradient refuses dilation > 1, and the wasm
// backend registers no depthwise backprop kernels at all, so neither DeepLabV3+'s atrous separable
// convs (dilations 12/24/36) nor even an undilated depthwise conv would train there. The two usual
// work-arounds both cost too much at ASPP sizes: a zero-spread filter (73x73 at dilation 36) makes
// the conv ~600x the work, and splitting the input into its d*d phase sub-grids multiplies the batch
// by d*d = 1296 with tiny maps that are mostly padding (the pad alone is 4.5x the input at 64x64).
//
// The gradient here is exact and never materialises padding:
//   dx = the same depthwise conv applied to dy with the spatially flipped filter and padding
//        d(k-1) - p: an ordinary forward conv, so it takes the backend's fast kernel (XNNPACK on
//        wasm), dilation included;
//   dw[ky, kx, c] = sum over n, i, j of dy[n, i, j, c] * x[n, i + ky*d - p, j + kx*d - p, c]: per tap,
//        one multiply of the overlapping windows of dy and x and a reduction to [C]. Taps whose
//        window lies wholly in the padding contribute zero and cost nothing; at dilation 36 on a
//        64x64 map each outer tap overlaps only 28 of 64 rows.
import * as tf from '@tensorflow/tfjs';

export interface DepthwiseGeometry {
  /** Symmetric zero padding on both spatial axes. */
  padding: number;
  dilation: number;
}

/** Output size along one axis: L + 2p - d(k-1) (stride 1). */
export function depthwiseOutputSize(size: number, kernel: number, g: DepthwiseGeometry): number {
  return size + 2 * g.padding - g.dilation * (kernel - 1);
}


/** [start, end) of the output positions whose input position (i + offset) lies inside [0, size). */
function overlap(outSize: number, size: number, offset: number): [number, number] {
  const start = Math.max(0, -offset);
  const end = Math.min(outSize, size - offset);
  return [start, Math.max(start, end)];
}

/** dL/dfilter of depthwiseConv2d, [kh, kw, C, 1]; exported for the benchmark. */
export function depthwiseFilterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number, g: DepthwiseGeometry): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const [, oh, ow] = dy.shape;
  return tf.tidy(() => {
    const taps: tf.Tensor1D[] = [];
    for (let ky = 0; ky < kh; ky++) {
      const oy = ky * g.dilation - g.padding;
      const [i0, i1] = overlap(oh, h, oy);
      for (let kx = 0; kx < kw; kx++) {
        const ox = kx * g.dilation - g.padding;
        const [j0, j1] = overlap(ow, w, ox);
        if (i1 === i0 || j1 === j0) {
          taps.push(tf.zeros([c]));
          continue;
        }
        const size: [number, number, number, number] = [n, i1 - i0, j1 - j0, c];
        const dyWin = tf.slice(dy, [0, i0, j0, 0], size);
        const xWin = tf.slice(x, [0, i0 + oy, j0 + ox, 0], size);
        taps.push(tf.sum(tf.mul(dyWin, xWin), [0, 1, 2]));
      }
    }
    return tf.reshape(tf.stack(taps), [kh, kw, c, 1]);
  });
}

/** dL/dx of depthwiseConv2d; exported for the benchmark. */
export function depthwiseInputGradient(dy: tf.Tensor4D, filter: tf.Tensor4D, inputShape: number[], g: DepthwiseGeometry): tf.Tensor4D {
  const [kh, kw] = filter.shape;
  const [, h, w] = inputShape;
  return tf.tidy(() => {
    const flipped = tf.reverse(filter, [0, 1]);
    // Transposed padding per axis; when the forward padding exceeds the filter's reach it is
    // negative, i.e. dy covers more than x and the result is cropped.
    const qh = g.dilation * (kh - 1) - g.padding;
    const qw = g.dilation * (kw - 1) - g.padding;
    const padded = qh > 0 || qw > 0
      ? tf.pad(dy, [[0, 0], [Math.max(qh, 0), Math.max(qh, 0)], [Math.max(qw, 0), Math.max(qw, 0)], [0, 0]])
      : dy;
    const full = tf.engine().runKernel(tf.DepthwiseConv2dNative, { x: padded, filter: flipped }, {
      strides: 1, pad: 'valid', dilations: g.dilation, dataFormat: 'NHWC',
    }) as tf.Tensor4D;
    const [, fh, fw, c] = full.shape;
    if (fh === h && fw === w) return full;
    return tf.slice(full, [0, (fh - h) / 2, (fw - w) / 2, 0], [full.shape[0], h, w, c]);
  });
}

/**
 * y[n, i, j, c] = sum over ky, kx of filter[ky, kx, c, 0] * x[n, i + ky*d - p, j + kx*d - p, c]
 * (zero outside x): PyTorch's conv2d with groups = channels, stride 1. `filter` is tfjs's depthwise
 * layout [kh, kw, C, 1].
 */
export function depthwiseConv2d(x: tf.Tensor4D, filter: tf.Tensor4D, g: DepthwiseGeometry): tf.Tensor4D {
  const [kh, kw, fc, mult] = filter.shape;
  const [, h, w, c] = x.shape;
  if (fc !== c || mult !== 1) {
    throw new Error(`Error in depthwiseConv2d: input has ${c} channels, filter is [${filter.shape}] (expected [kh, kw, ${c}, 1])`);
  }
  if (!Number.isInteger(g.dilation) || g.dilation < 1) {
    throw new Error(`Error in depthwiseConv2d: dilation must be a positive integer, got ${g.dilation}`);
  }
  if (!Number.isInteger(g.padding) || g.padding < 0) {
    throw new Error(`Error in depthwiseConv2d: padding must be a non-negative integer, got ${g.padding}`);
  }
  if (depthwiseOutputSize(h, kh, g) < 1 || depthwiseOutputSize(w, kw, g) < 1) {
    throw new Error(`Error in depthwiseConv2d: input ${h}x${w} too small for kernel ${kh}x${kw} with ` +
      `padding ${g.padding}, dilation ${g.dilation}`);
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, wt] = args as tf.Tensor4D[];
    const save = args[2] as tf.GradSaveFunc;
    save([input, wt]);
    const value = tf.engine().runKernel(tf.DepthwiseConv2dNative, { x: input, filter: wt }, {
      strides: 1, pad: g.padding, dilations: g.dilation, dataFormat: 'NHWC',
    }) as tf.Tensor4D;
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as tf.Tensor4D[];
        return [depthwiseInputGradient(dy as tf.Tensor4D, ws, xs.shape, g), depthwiseFilterGradient(xs, dy as tf.Tensor4D, kh, kw, g)];
      },
    };
  });
  return op(x, filter) as tf.Tensor4D;
}
