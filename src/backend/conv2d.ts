// A 2-D convolution (NHWC, HWIO filter) whose gradient also works when it is dilated.
//
// tfjs registers no gradient for a dilated Conv2D on any backend. The usual way round it,
// spaceToBatchND -> conv2d -> batchToSpaceND, costs more than the convolution on wasm: the wasm
// SpaceToBatchND/BatchToSpaceND are a pad plus a rank-6 Transpose, ~23% of a PSPNet-R18 (base 16)
// step. Here the forward pass is the backend's own Conv2D with `dilations` (XNNPACK on wasm), and the
// gradient calls Conv2DBackpropInput / Conv2DBackpropFilter with `dilations`, which our wasm kernels
// (register-wasm-kernels.ts) accept. Stock kernels on other backends ignore that attribute, so there
// the gradient runs the undilated kernels on the filter with (d-1) zeros between taps, which is the
// same convolution.
import * as tf from '@tensorflow/tfjs';
import { wasmConvGradientsRegistered } from './register-wasm-kernels';

export interface Conv2dGeometry {
  stride: number;
  /** Symmetric zero padding on both spatial axes, or 'same' / 'valid' as tfjs means them. */
  padding: number | 'same' | 'valid';
  dilation: number;
}

/** The filter with (d-1) zero taps between neighbouring taps: [(kh-1)d+1, (kw-1)d+1, in, out]. */
export function dilateFilter(filter: tf.Tensor4D, d: number): tf.Tensor4D {
  if (d === 1) return filter;
  const [kh, kw, cin, cout] = filter.shape;
  return tf.tidy(() => {
    const spread = tf.pad(tf.reshape(filter, [kh, 1, kw, 1, cin * cout]),
                          [[0, 0], [0, d - 1], [0, 0], [0, d - 1], [0, 0]]);
    const full = tf.reshape(spread, [kh * d, kw * d, cin, cout]);
    return tf.slice(full, [0, 0, 0, 0], [(kh - 1) * d + 1, (kw - 1) * d + 1, cin, cout]) as tf.Tensor4D;
  });
}

function dilatedGradients(x: tf.Tensor4D, filter: tf.Tensor4D, dy: tf.Tensor4D, g: Conv2dGeometry):
    [tf.Tensor4D, tf.Tensor4D] {
  const engine = tf.engine();
  const common = { strides: g.stride, pad: g.padding, dataFormat: 'NHWC' };
  if (tf.getBackend() === 'wasm' && wasmConvGradientsRegistered()) {
    const dx = engine.runKernel(tf.Conv2DBackpropInput, { dy, filter },
                                { ...common, inputShape: x.shape, dilations: g.dilation }) as tf.Tensor4D;
    const dw = engine.runKernel(tf.Conv2DBackpropFilter, { x, dy },
                                { ...common, filterShape: filter.shape, dilations: g.dilation }) as tf.Tensor4D;
    return [dx, dw];
  }
  return tf.tidy(() => {
    const d = g.dilation;
    const wide = dilateFilter(filter, d);
    const dx = engine.runKernel(tf.Conv2DBackpropInput, { dy, filter: wide },
                                { ...common, inputShape: x.shape }) as tf.Tensor4D;
    const dwWide = engine.runKernel(tf.Conv2DBackpropFilter, { x, dy },
                                    { ...common, filterShape: wide.shape }) as tf.Tensor4D;
    const [kh, kw, cin, cout] = filter.shape;
    const dw = tf.stridedSlice(dwWide, [0, 0, 0, 0], [(kh - 1) * d + 1, (kw - 1) * d + 1, cin, cout],
                               [d, d, 1, 1]) as tf.Tensor4D;
    return [dx, dw];
  });
}

/**
 * conv2d(x, filter) with stride, padding and dilation, differentiable for any dilation. With
 * dilation 1 it is tf.conv2d (and takes tfjs's own gradient).
 */
export function conv2d(x: tf.Tensor4D, filter: tf.Tensor4D, g: Conv2dGeometry): tf.Tensor4D {
  if (g.dilation === 1) return tf.conv2d(x, filter, g.stride, g.padding);
  if (!Number.isInteger(g.dilation) || g.dilation < 1) {
    throw new Error(`Error in conv2d: dilation must be a positive integer, got ${g.dilation}`);
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, w] = args as tf.Tensor4D[];
    const save = args[2] as tf.GradSaveFunc;
    save([input, w]);
    const value = tf.engine().runKernel(tf.Conv2D, { x: input, filter: w }, {
      strides: g.stride, pad: g.padding, dataFormat: 'NHWC', dilations: g.dilation,
    }) as tf.Tensor4D;
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        dilatedGradients(saved[0] as tf.Tensor4D, saved[1] as tf.Tensor4D, dy as tf.Tensor4D, g),
    };
  });
  return op(x, filter) as tf.Tensor4D;
}
