// nn.MaxPool2d(kernel, stride, padding) with PyTorch's geometry: symmetric padding that never wins
// the max, output floor((L + 2p - k) / s) + 1. tfjs's 'same' would pad asymmetrically (0 before,
// 1 after for even sizes) and shift every window by one pixel; a numeric pad is symmetric.

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';

export class MaxPool2d extends Module implements Layer {
  constructor(readonly kernelSize: number, readonly stride: number, readonly padding: number) {
    super();
    if (2 * padding > kernelSize) {
      throw new Error(`Error in MaxPool2d: padding ${padding} must be at most half of kernel ${kernelSize}`);
    }
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.maxPool(x, this.kernelSize, this.stride, this.padding === 0 ? 'valid' : this.padding);
  }
}
