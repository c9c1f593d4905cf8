// nn.ReLU as a module, only so that Sequential stems keep PyTorch's indices (stem.2, stem.5 ...).

import * as tf from '@tensorflow/tfjs';
import { Module, type Layer } from './module';

export class ReLU extends Module implements Layer {
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.relu(x);
  }
}
