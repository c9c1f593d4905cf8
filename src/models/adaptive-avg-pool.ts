// Adaptive average pooling with PyTorch's exact bins: output cell i along an axis of length L pooled
// to n cells averages [floor(i*L/n), ceil((i+1)*L/n)). Bins may overlap and differ in size when n does
// not divide L (e.g. PSPNet's 3 and 6 bins on odd feature maps), so no fixed-window avgPool matches.
// The bins are separable, so pooling is y = A x B^T with small fixed matrices: two matmuls forward,
// two backward, exact, and fast on every backend.

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';
import { separableLinear, type Matrix } from './separable-linear';

/** The [outSize, inSize] matrix that averages PyTorch's adaptive bins along one axis. */
export function adaptivePoolMatrix(inSize: number, outSize: number): Matrix {
  const data = new Float32Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    const start = Math.floor((i * inSize) / outSize);
    const end = Math.ceil(((i + 1) * inSize) / outSize);
    for (let j = start; j < end; j++) data[i * inSize + j] = 1 / (end - start);
  }
  return { rows: outSize, cols: inSize, data };
}

export function adaptiveAvgPool2d(x: tf.Tensor4D, outH: number, outW: number = outH): tf.Tensor4D {
  const [, h, w] = x.shape;
  return separableLinear(x, adaptivePoolMatrix(h, outH), adaptivePoolMatrix(w, outW));
}

/** nn.AdaptiveAvgPool2d(size): no parameters; a slot in e.g. psp_modules.i.0. */
export class AdaptiveAvgPool2d extends Module implements Layer {
  constructor(readonly outputSize: number) {
    super();
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return adaptiveAvgPool2d(x, this.outputSize, this.outputSize);
  }
}
