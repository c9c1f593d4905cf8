import * as assert from 'node:assert/strict';
import { Rng } from '../../src/util/rng';

/** Uniform values in [lo, hi) from a seed. */
export function randomData(size: number, seed: number, lo = -1, hi = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.uniform(lo, hi));
}

/** max |a - b| / max |b|, so values near zero do not dominate. An all-zero reference fails: it tests nothing. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, 'result sizes differ');
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  assert.ok(maxRef > 0, 'reference is all zeros; the case tests nothing');
  return maxDiff / maxRef;
}
