import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../src/util/rng';

/** A tensor of normal values (default standard normal) from a seed. */
export function randn(shape: number[], seed: number, mean = 0, std = 1): tf.Tensor {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = mean + std * rng.normal();
  return tf.tensor(v, shape);
}

/** Runs fn on `backend` (switching to it first). */
export async function onBackend<T>(backend: string, fn: () => T): Promise<T> {
  assert.ok(await tf.setBackend(backend), `could not switch to ${backend}`);
  return fn();
}
