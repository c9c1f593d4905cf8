import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LoadedSample } from '../src/data/load-sample';
import { evalTransform, resizeBilinear, resizeNearest, scaledSize, trainTransform } from '../src/data/transforms';
import { Rng } from '../src/util/rng';

const NORM = { mean: [10, 20, 30] as [number, number, number], std: [2, 4, 5] as [number, number, number] };

function sample(height: number, width: number): LoadedSample {
  const image = new Uint8Array(height * width * 3);
  const label = new Uint8Array(height * width);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      image.set([(x * 13) % 256, (y * 17) % 256, (x * y) % 256], i * 3);
      label[i] = x < width / 3 ? 0 : y < height / 2 ? 3 : (x + y) % 7 === 0 ? 255 : 1;
    }
  }
  return { image, label, height, width };
}

test('resizeBilinear uses half-pixel centres and clamps at the edges', () => {
  assert.deepEqual([...resizeBilinear([0, 100], 1, 2, 1, 1, 4)], [0, 25, 75, 100]);
  assert.deepEqual([...resizeBilinear([0, 100, 50, 50], 2, 2, 1, 1, 1)], [50]);
  // Same size is a plain copy, channels kept apart.
  assert.deepEqual([...resizeBilinear([1, 2, 3, 4, 5, 6], 1, 2, 3, 1, 2)], [1, 2, 3, 4, 5, 6]);
});

test('resizeNearest picks the source pixel whose centre is nearest', () => {
  assert.deepEqual([...resizeNearest(Uint8Array.of(1, 2, 3, 4), 1, 4, 1, 2)], [2, 4]);
  assert.deepEqual([...resizeNearest(Uint8Array.of(1, 2), 1, 2, 1, 4)], [1, 1, 2, 2]);
});

test('a window of a resize equals the same part of the full resize', () => {
  const s = sample(9, 11);
  const full = resizeBilinear(s.image, 9, 11, 3, 17, 23);
  const part = resizeBilinear(s.image, 9, 11, 3, 17, 23, { top: 4, left: 6, height: 10, width: 12 });
  const fullLabel = resizeNearest(s.label, 9, 11, 17, 23);
  const partLabel = resizeNearest(s.label, 9, 11, 17, 23, { top: 4, left: 6, height: 10, width: 12 });
  for (let y = 0; y < 10; y++) {
    for (let x = 0; x < 12; x++) {
      const f = (y + 4) * 23 + x + 6;
      const p = y * 12 + x;
      assert.deepEqual([...part.subarray(3 * p, 3 * p + 3)], [...full.subarray(3 * f, 3 * f + 3)]);
      assert.equal(partLabel[p], fullLabel[f]);
    }
  }
  assert.throws(() => resizeNearest(s.label, 9, 11, 17, 23, { top: 10, left: 0, height: 8, width: 1 }), /outside the 17x23 output/);
});

test('scaledSize: own size, fixed base, and base with kept aspect ratio (mmseg keep_ratio)', () => {
  assert.deepEqual(scaledSize(360, 480, 1.5), [540, 720]);
  assert.deepEqual(scaledSize(360, 480, 0.5, [512, 1024], false), [256, 512]);
  // Long side fits 1024, short side fits 512: 480 * min(1024/480, 512/360) = 682.7.
  assert.deepEqual(scaledSize(360, 480, 1, [512, 1024]), [512, 683]);
});

test('train transform is a pure function of the rng seed and changes with it', () => {
  const t = trainTransform({ ...NORM, cropSize: [16, 20], scaleRange: [0.5, 2], ignoreIndex: 255 });
  const s = sample(24, 30);
  const a = t(s, new Rng(5, 0, 1));
  const b = t(s, new Rng(5, 0, 1));
  assert.deepEqual(a, b);
  assert.equal(a.image.length, 16 * 20 * 3);
  assert.equal(a.label.length, 16 * 20);
  assert.deepEqual([a.height, a.width], [16, 20]);
  const others = [2, 3, 4].map((k) => t(s, new Rng(5, 0, k)));
  assert.ok(others.some((o) => !o.image.every((v, i) => v === a.image[i])));
});

test('train transform: label values only from the source (nearest) plus ignore; padding is 0 / ignore', () => {
  const s = sample(10, 12);
  const source = new Set(s.label);
  const t = trainTransform({ ...NORM, cropSize: [32, 32], scaleRange: [0.7, 1.9], ignoreIndex: 255 });
  for (let k = 0; k < 20; k++) {
    const out = t(s, new Rng(1, k));
    for (const v of out.label) assert.ok(source.has(v) || v === 255, `label value ${v}`);
    // Scaled to at most 19x23 inside a 32x32 crop: the bottom row and right column are padding.
    for (let x = 0; x < 32; x++) {
      const i = 31 * 32 + x;
      assert.equal(out.label[i], 255);
      assert.deepEqual([...out.image.subarray(3 * i, 3 * i + 3)], [0, 0, 0]);
    }
  }
});

test('flip mirrors the crop that the same draws give without flipping', () => {
  const s = sample(20, 26);
  const common = { ...NORM, cropSize: [12, 14] as [number, number], scaleRange: [0.8, 1.2] as [number, number], ignoreIndex: 255 };
  const plain = trainTransform({ ...common, flipProb: 0 })(s, new Rng(9));
  const flipped = trainTransform({ ...common, flipProb: 1 })(s, new Rng(9));
  for (let y = 0; y < 12; y++) {
    for (let x = 0; x < 14; x++) {
      const a = y * 14 + x;
      const b = y * 14 + (13 - x);
      assert.equal(flipped.label[a], plain.label[b]);
      assert.deepEqual([...flipped.image.subarray(3 * a, 3 * a + 3)], [...plain.image.subarray(3 * b, 3 * b + 3)]);
    }
  }
});

test('eval transform normalises and resizes the label with nearest only', () => {
  const s = sample(6, 9);
  const same = evalTransform(NORM)(s, new Rng(0));
  assert.deepEqual([same.height, same.width], [6, 9]);
  assert.deepEqual([...same.label], [...s.label]);
  for (let c = 0; c < 3; c++) {
    const want = (s.image[3 * 10 + c] - NORM.mean[c]) / NORM.std[c];
    assert.ok(Math.abs(same.image[3 * 10 + c] - want) < 1e-6, `channel ${c}: ${same.image[3 * 10 + c]} vs ${want}`);
  }

  const resized = evalTransform({ ...NORM, size: [12, 18] })(s, new Rng(0));
  assert.equal(resized.image.length, 12 * 18 * 3);
  const source = new Set(s.label);
  assert.ok([...resized.label].every((v) => source.has(v)));
  assert.equal(resized.label[2 * 18 + 4], s.label[1 * 9 + 2]); // exact 2x: pixel (4,2) comes from (2,1)
});

test('invalid options are rejected when the transform is built', () => {
  assert.throws(() => trainTransform({ ...NORM, cropSize: [0, 4], scaleRange: [1, 1], ignoreIndex: 255 }), /cropSize/);
  assert.throws(() => trainTransform({ ...NORM, cropSize: [4, 4], scaleRange: [2, 1], ignoreIndex: 255 }), /reversed/);
  assert.throws(() => evalTransform({ mean: [0, 0, 0], std: [1, 0, 1] }), /positive stds/);
});
