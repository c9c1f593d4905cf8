import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsKernels, kernelsFor, simdAvailable } from '../src/cluster/simd-kernels';
import { wasm } from '../src/cluster/wasm-api';

function memory(bytes: number) {
  const pages = Math.ceil(bytes / 65536);
  return new wasm.Memory({ initial: pages, maximum: pages, shared: true });
}

test('wasm SIMD is available on this Node', () => {
  assert.equal(simdAvailable(), true);
});

test('SIMD add equals the JS loop for every length and alignment, and leaves neighbours alone', () => {
  const mem = memory(1 << 20);
  const simd = kernelsFor(mem);
  const js = jsKernels(mem);
  const f = new Float32Array(mem.buffer);
  const fill = () => {
    for (let i = 0; i < f.length; i++) f[i] = Math.fround(Math.sin(i) * 1000);
  };
  for (const n of [0, 1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 1000, 4099]) {
    for (const dstAt of [0, 1, 2, 3, 1024]) {
      const srcAt = 60_000 + (n % 5);
      fill();
      js.add(dstAt * 4, srcAt * 4, n);
      const want = f.slice();
      fill();
      simd.add(dstAt * 4, srcAt * 4, n);
      assert.deepEqual(f, want, `n=${n} dst=${dstAt}`);
    }
  }
});

test('SIMD divide is a correctly rounded float32 division', () => {
  const mem = memory(65536);
  const simd = kernelsFor(mem);
  const f = new Float32Array(mem.buffer);
  for (const divisor of [2, 3, 7]) {
    for (const n of [0, 1, 3, 4, 5, 33]) {
      for (let i = 0; i < f.length; i++) f[i] = i * 3 - 1000;
      simd.divide(4, n, divisor);
      assert.equal(f[0], -1000);
      for (let i = 1; i <= n; i++) assert.equal(f[i], Math.fround((i * 3 - 1000) / divisor), `divisor ${divisor} n ${n} i ${i}`);
      assert.equal(f[n + 1], (n + 1) * 3 - 1000);
    }
  }
});
