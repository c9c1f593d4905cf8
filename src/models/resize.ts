// Bilinear resize with PyTorch's F.interpolate(mode='bilinear') semantics for both align_corners.
//
// The forward pass is tfjs's native kernel (alignCorners=true, or halfPixelCenters=true for
// align_corners=false; the tests check it equals PyTorch's formula). The gradient is NOT tfjs's
// ResizeBilinearGrad: that kernel ignores halfPixelCenters, so it is wrong for align_corners=false.
// Bilinear interpolation is separable and linear, so its exact adjoint is two matmuls with the
// transposed interpolation matrices, which we build from PyTorch's source-index formula.

import * as tf from '@tensorflow/tfjs';
import { withSeparableGradient, type Matrix } from './separable-linear';

/**
 * The [outSize, inSize] matrix of PyTorch's linear interpolation along one axis (upsample_bilinear2d
 * with an explicit output size): align_corners maps corner to corner, otherwise pixel centres are
 * aligned and source positions below 0 clamp to 0.
 */
export function bilinearMatrix(inSize: number, outSize: number, alignCorners: boolean): Matrix {
  const data = new Float32Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    let src: number;
    if (alignCorners) {
      src = outSize > 1 ? (i * (inSize - 1)) / (outSize - 1) : 0;
    } else {
      src = Math.max(((i + 0.5) * inSize) / outSize - 0.5, 0);
    }
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const l1 = src - i0;
    data[i * inSize + i0] += 1 - l1;
    data[i * inSize + i1] += l1;
  }
  return { rows: outSize, cols: inSize, data };
}

export function resizeBilinear(x: tf.Tensor4D, outH: number, outW: number, alignCorners: boolean): tf.Tensor4D {
  const [, h, w] = x.shape;
  if (h === outH && w === outW) return x; // both conventions are the identity then
  return withSeparableGradient(
    x,
    (t) => tf.image.resizeBilinear(t, [outH, outW], alignCorners, !alignCorners),
    bilinearMatrix(h, outH, alignCorners),
    bilinearMatrix(w, outW, alignCorners),
  );
}
