// nn.Sequential: children named '0', '1', ... in order, which is how PyTorch numbers the keys of a
// Sequential's state_dict (layer1.0.conv1.weight, downsample.1.running_mean, stem.3.weight).
// Parameterless members (ReLU, pooling) still take their index so the numbering matches.

import type * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';

export class Sequential extends Module implements Layer {
  private readonly layers: (Module & Layer)[];

  constructor(layers: (Module & Layer)[]) {
    super();
    this.layers = layers;
    layers.forEach((layer, i) => this.registerModule(String(i), layer));
  }

  get length(): number {
    return this.layers.length;
  }

  at(i: number): Module & Layer {
    const layer = this.layers[i];
    if (layer === undefined) throw new Error(`Error in Sequential: no layer ${i} (length ${this.layers.length})`);
    return layer;
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    let y = x;
    for (const layer of this.layers) y = layer.forward(y, ctx);
    return y;
  }
}
