// Model weights by name, in and out of checkpoints. Names are the PyTorch/mmseg state_dict keys the
// model assigns; tensors keep the tfjs layout (conv weights HWIO).
import * as tf from '@tensorflow/tfjs';
import type { NamedArray } from '../checkpoint/safetensors';

export interface HasState {
  namedParameters(): Array<[string, tf.Variable]>;
  namedBuffers(): Array<[string, tf.Variable]>;
}

export function namedState(model: HasState): Array<[string, tf.Variable]> {
  return [...model.namedParameters(), ...model.namedBuffers()];
}

export function modelStateDict(model: HasState): Map<string, NamedArray> {
  const out = new Map<string, NamedArray>();
  for (const [name, v] of namedState(model)) {
    out.set(name, { dtype: 'F32', shape: v.shape.slice(), data: v.dataSync() as Float32Array });
  }
  return out;
}

/**
 * Loads every model tensor from `state`. A missing name, an unexpected one or a shape mismatch is an
 * error naming the first tensor that differs (resuming a checkpoint of another architecture).
 */
export function loadModelState(model: HasState, state: Map<string, NamedArray>, source: string): void {
  const own = namedState(model);
  for (const [name, v] of own) {
    const t = state.get(name);
    if (!t) throw new Error(`${source}: the checkpoint does not match the configured model: it has no tensor ${name} (shape [${v.shape}])`);
    if (t.shape.join(',') !== v.shape.join(',')) {
      throw new Error(`${source}: the checkpoint does not match the configured model: ${name} has shape [${t.shape}] in the checkpoint, [${v.shape}] in the model`);
    }
  }
  const ownNames = new Set(own.map(([n]) => n));
  for (const name of state.keys()) {
    if (!ownNames.has(name)) throw new Error(`${source}: the checkpoint does not match the configured model: it has tensor ${name}, which the model does not`);
  }
  for (const [name, v] of own) {
    const t = state.get(name)!;
    tf.tidy(() => v.assign(tf.tensor(t.data, t.shape, 'float32')));
  }
}
