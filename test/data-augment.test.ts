import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlurStep, compileTransforms, gaussianKernel, PadStep, photometricInPlace, renderImage, renderLabel, ResizeStep, RotateStep, type ImagePatch, type LabelPatch, type Rect, type Step } from '../src/data/augment';
import { checkTransforms, DEFAULT_TRAIN_TRANSFORMS, type TransformSpec } from '../src/data/augment-spec';
import type { LoadedSample } from '../src/data/load-sample';
import { trainTransform } from '../src/data/transforms';
import { Rng } from '../src/util/rng';
import { ConfigError } from '../src/config/config-error';
import { resolveConfig } from '../src/config/load-config';

const CTX = { mean: [123.675, 116.28, 103.53] as [number, number, number], std: [58.395, 57.12, 57.375] as [number, number, number], ignoreIndex: 255 };

/** A sample with smooth gradients, texture and a few label regions (values 0..4 and some 255). */
function sample(height: number, width: number, seed = 1): LoadedSample {
  const rng = new Rng(seed);
  const image = new Uint8Array(height * width * 3);
  const label = new Uint8Array(height * width);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      image[3 * i] = (x * 7 + y * 3 + rng.int(20)) % 256;
      image[3 * i + 1] = Math.round(128 + 100 * Math.sin(x / 5) * Math.cos(y / 7));
      image[3 * i + 2] = (x * y + rng.int(9)) % 256;
      label[i] = x < width / 4 ? 0 : y < height / 3 ? 1 : (x + 2 * y) % 17 === 0 ? 255 : x > (3 * width) / 4 ? 4 : 2 + ((x >> 3) & 1);
    }
  }
  return { image, label, height, width };
}

const full = (h: number, w: number): Rect => ({ top: 0, left: 0, height: h, width: w });

/** Every step over its whole canvas, one after the other: the plain sequential semantics. */
function sequential(s: LoadedSample, steps: Step[]): { image: Float32Array; label: Uint8Array } {
  let img: ImagePatch = { data: Float32Array.from(s.image), rect: full(s.height, s.width) };
  let lab: LabelPatch = { data: s.label.slice(), rect: full(s.height, s.width) };
  for (const step of steps) {
    img = step.image(img, full(step.height, step.width));
    if (step.label) lab = step.label(lab, full(step.height, step.width));
  }
  return { image: img.data, label: lab.data };
}

const specs = (list: Array<Record<string, unknown>>): TransformSpec[] => checkTransforms(list, 'test');

test('the default list reproduces the former fixed transform (resize, pad, crop, flip, normalise) draw for draw', () => {
  const old = trainTransform({ ...CTX, cropSize: [40, 48], scaleRange: [0.5, 2], ignoreIndex: 255 });
  const now = compileTransforms(specs(DEFAULT_TRAIN_TRANSFORMS), { ...CTX, cropSize: [40, 48] });
  for (const [h, w] of [[30, 50], [60, 90], [17, 23]]) {
    const s = sample(h, w, h);
    for (let k = 0; k < 12; k++) {
      const a = old(s, new Rng(3, k));
      const b = now(s, new Rng(3, k));
      assert.deepEqual([b.height, b.width], [a.height, a.width]);
      assert.deepEqual(b.label, a.label, `label ${h}x${w} draw ${k}`);
      let worst = 0;
      for (let i = 0; i < a.image.length; i++) worst = Math.max(worst, Math.abs(a.image[i] - b.image[i]));
      // Padding is the mean rounded to float32 and then normalised, instead of an exact 0: ~5e-8.
      assert.ok(worst < 1e-6, `image ${h}x${w} draw ${k}: max difference ${worst}`);
    }
  }
});

test('rendering only the final crop gives exactly what whole-image passes give', () => {
  const list = [
    { type: 'random_resize', scale_range: [0.5, 2.0] },
    { type: 'random_rotate', degrees: 15, fill: 'mean' },
    { type: 'gaussian_blur', prob: 1 },
    { type: 'flip', prob: 0.5 },
    { type: 'photometric', prob: 1 },
    { type: 'pad', fill: 0 },
    { type: 'random_crop', size: [24, 30] },
    { type: 'normalize' },
  ];
  const t = compileTransforms(specs(list), { ...CTX, cropSize: [24, 30] });
  const s = sample(41, 57);
  const seen = new Set<string>();
  for (let k = 0; k < 25; k++) {
    const plan = t.plan(s, new Rng(11, k));
    seen.add(plan.steps.map((st) => st.name).join(','));
    const ref = sequential(s, plan.steps);
    const out = full(plan.height, plan.width);
    assert.deepEqual(renderImage(s, plan.steps, out).data, ref.image, `image, draw ${k}: ${plan.steps.map((st) => st.name)}`);
    assert.deepEqual(renderLabel(s, plan.steps, out).data, ref.label, `label, draw ${k}`);
    // And the transform itself (planning again from the same seed) matches.
    const direct = t(s, new Rng(11, k));
    assert.deepEqual(direct.image, ref.image);
    assert.deepEqual(direct.label, Int32Array.from(ref.label));
  }
  assert.ok(seen.size > 1, 'the draws should exercise different step sequences');
});

test('every op is a pure function of the rng seed, and seeds differ', () => {
  const list = [
    { type: 'random_resize', scale_range: [0.7, 1.5], short_side: 20 },
    { type: 'random_rotate', degrees: [-30, 30], prob: 0.5 },
    { type: 'photometric' },
    { type: 'gaussian_blur', kernel_size: 7, sigma: 1.5 },
    { type: 'pad', size: [20, 20], fill: [1, 2, 3] },
    { type: 'random_crop', size: [20, 20], cat_max_ratio: 0.75 },
    { type: 'flip' },
    { type: 'normalize', mean: [1, 2, 3], std: [4, 5, 6] },
  ];
  const t = compileTransforms(specs(list), CTX);
  const s = sample(33, 44);
  const a = t(s, new Rng(5, 1, 2));
  assert.deepEqual(t(s, new Rng(5, 1, 2)), a);
  assert.deepEqual([a.height, a.width], [20, 20]);
  const others = [3, 4, 5].map((k) => t(s, new Rng(5, 1, k)));
  assert.ok(others.some((o) => o.image.some((v, i) => v !== a.image[i])));
});

test('labels only move by nearest neighbour: every value is a source value or the ignore index; borders are ignore', () => {
  const s = sample(30, 40);
  const source = new Set(s.label);
  const t = compileTransforms(specs([{ type: 'random_resize', scale_range: [0.3, 2.5] }, { type: 'random_rotate', degrees: 45 }, { type: 'pad', size: [64, 64] }]), CTX);
  let sawRotatedCorner = false;
  for (let k = 0; k < 20; k++) {
    const out = t(s, new Rng(2, k));
    for (const v of out.label) assert.ok(source.has(v) || v === 255, `label value ${v}`);
    const plan = t.plan(s, new Rng(2, k));
    const rot = plan.steps.find((st) => st instanceof RotateStep) as RotateStep | undefined;
    if (rot && Math.abs(rot.degrees) > 20) {
      // The top-left corner of a canvas rotated by more than 20 degrees lies outside the source.
      assert.equal(out.label[0], 255);
      sawRotatedCorner = true;
    }
  }
  assert.ok(sawRotatedCorner);
});

test('rotate: 0 degrees is skipped, 180 degrees turns the image around exactly, the exposed border is the fill', () => {
  const s = sample(9, 12);
  const r180 = new RotateStep(9, 12, 180, [7, 8, 9], 255);
  const img = r180.image({ data: Float32Array.from(s.image), rect: full(9, 12) }, full(9, 12)).data;
  const lab = r180.label({ data: s.label, rect: full(9, 12) }, full(9, 12)).data;
  for (let y = 0; y < 9; y++) {
    for (let x = 0; x < 12; x++) {
      const a = y * 12 + x;
      const b = (8 - y) * 12 + (11 - x);
      assert.equal(lab[a], s.label[b]);
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(img[3 * a + c] - s.image[3 * b + c]) < 1e-3, `(${x},${y})`);
    }
  }
  const r45 = new RotateStep(9, 12, 45, [7, 8, 9], 255);
  const corner = r45.image({ data: Float32Array.from(s.image), rect: full(9, 12) }, { top: 0, left: 0, height: 1, width: 1 }).data;
  assert.deepEqual([...corner], [7, 8, 9]);
  const none = compileTransforms(specs([{ type: 'random_rotate', degrees: 0 }]), CTX).plan(s, new Rng(1));
  assert.equal(none.steps.length, 0);
});

test('random_crop with cat_max_ratio redraws windows dominated by one class', () => {
  // Class 1 left of x=85, class 2 right of it: only 7 of the 91 offsets of a 10-wide window hold
  // both classes with neither above 75%.
  const h = 20;
  const w = 100;
  const s: LoadedSample = { image: new Uint8Array(h * w * 3).fill(100), label: new Uint8Array(h * w), height: h, width: w };
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) s.label[y * w + x] = x < 85 ? 1 : 2;
  const plain = compileTransforms(specs([{ type: 'random_crop', size: [10, 10] }]), CTX);
  const picky = compileTransforms(specs([{ type: 'random_crop', size: [10, 10], cat_max_ratio: 0.75, max_tries: 300 }]), CTX);
  const mixed = (labels: Int32Array) => {
    const ones = labels.filter((v) => v === 1).length;
    return ones > 0 && ones < labels.length && ones / labels.length < 0.75;
  };
  let plainMixed = 0;
  let pickyMixed = 0;
  for (let k = 0; k < 40; k++) {
    if (mixed(plain(s, new Rng(9, k)).label)) plainMixed++;
    if (mixed(picky(s, new Rng(9, k)).label)) pickyMixed++;
  }
  assert.ok(plainMixed < 10, `plain crops with both classes: ${plainMixed}`);
  assert.equal(pickyMixed, 40);
});

test('gaussian blur: OpenCV kernels, a flat image stays flat, and the border is reflected without the edge pixel', () => {
  assert.deepEqual([...gaussianKernel(5, null)], [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]);
  const k9 = gaussianKernel(9, null);
  assert.ok(Math.abs(k9.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  const flat = new Float32Array(6 * 7 * 3).fill(42);
  const b = new BlurStep(6, 7, gaussianKernel(5, null));
  assert.ok(b.image({ data: flat, rect: full(6, 7) }, full(6, 7)).data.every((v) => Math.abs(v - 42) < 1e-4));
  // One row [0, 16, 0, 0, ...] with k=3 [1/4, 1/2, 1/4]: reflect101 makes x=-1 read x=1.
  const row = new Float32Array(1 * 5 * 3);
  row[3] = 16;
  const out = new BlurStep(1, 5, gaussianKernel(3, null)).image({ data: row, rect: full(1, 5) }, full(1, 5)).data;
  assert.deepEqual([...out].filter((_, i) => i % 3 === 0), [8, 8, 4, 0, 0]);
});

test('photometric: saturation 0 gives grey, hue turns red into green and keeps value and saturation, brightness clips', () => {
  const s: LoadedSample = { image: Uint8Array.of(200, 10, 10, 250, 250, 250), label: Uint8Array.of(0, 0), height: 1, width: 2 };
  const run = (p: Record<string, unknown>) => compileTransforms(specs([{ type: 'photometric', prob: 1, brightness_delta: 0, contrast_range: [1, 1], saturation_range: [1, 1], hue_delta: 0, ...p }]), CTX)(s, new Rng(1)).image;
  const grey = run({ saturation_range: [0, 0] });
  assert.ok(Math.abs(grey[0] - grey[1]) < 1e-3 && Math.abs(grey[1] - grey[2]) < 1e-3 && Math.abs(grey[0] - 200) < 1e-3);
  const shifted = [...run({ hue_delta: 40 }).subarray(0, 3)];
  const sorted = [...shifted].sort((a, b) => a - b);
  assert.ok(Math.abs(sorted[2] - 200) < 1e-3 && Math.abs(sorted[0] - 10) < 1e-3 && sorted[1] > 11, shifted.join(','));
  const d = Float32Array.of(200, 10, 10);
  photometricInPlace(d, { brightness: null, contrast: null, contrastFirst: false, saturation: null, hue: 120 });
  assert.ok([10, 200, 10].every((v, i) => Math.abs(d[i] - v) < 1e-3), [...d].join(','));
  const bright = run({ brightness_delta: 255 });
  assert.ok(bright.every((v) => v >= 0 && v <= 255));
});

test('pad fills with the mean (0 after normalise) and the label with ignore; pad after normalise converts numeric fills', () => {
  const s = sample(5, 6);
  const a = compileTransforms(specs([{ type: 'pad', size: [8, 8] }, { type: 'normalize' }]), CTX)(s, new Rng(0));
  assert.deepEqual([a.height, a.width], [8, 8]);
  assert.ok(Math.abs(a.image[3 * (7 * 8 + 7)]) < 1e-6);
  assert.equal(a.label[7 * 8 + 7], 255);
  assert.equal(a.label[0], s.label[0]);
  const b = compileTransforms(specs([{ type: 'normalize' }, { type: 'pad', size: [8, 8], fill: 0 }]), CTX)(s, new Rng(0));
  assert.ok(Math.abs(b.image[3 * 63] - (0 - CTX.mean[0]) / CTX.std[0]) < 1e-5);
  const p = new PadStep(5, 6, 8, 8, [1, 2, 3], 255);
  assert.deepEqual(p.imageNeeds({ top: 6, left: 0, height: 2, width: 8 }), { top: 0, left: 0, height: 0, width: 0 });
});

test('resize bases: own size, short side, long side, fitted inside a size, exact size; validation resize and centre crop', () => {
  const s = sample(30, 40);
  const size = (list: Array<Record<string, unknown>>) => {
    const o = compileTransforms(specs(list), { ...CTX, cropSize: [8, 8] })(s, new Rng(0));
    return [o.height, o.width];
  };
  assert.deepEqual(size([{ type: 'resize', short_side: 15 }]), [15, 20]);
  assert.deepEqual(size([{ type: 'resize', long_side: 80 }]), [60, 80]);
  assert.deepEqual(size([{ type: 'resize', size: [20, 100] }]), [20, 27]);
  assert.deepEqual(size([{ type: 'resize', size: [20, 100], keep_ratio: false }]), [20, 100]);
  assert.deepEqual(size([{ type: 'resize', short_side: 15 }, { type: 'center_crop', size: [10, 10] }]), [10, 10]);
  assert.deepEqual(size([{ type: 'random_resize', scale_range: [2, 2], short_side: 10 }]), [20, 27]);
  // A 2x nearest upscale of the label takes each source pixel twice.
  const up = new ResizeStep(30, 40, 60, 80).label({ data: s.label, rect: full(30, 40) }, full(60, 80)).data;
  assert.equal(up[5 * 80 + 9], s.label[2 * 40 + 4]);
});

test('transform lists are checked with the item and key named', () => {
  const bad = (list: unknown, re: RegExp, opts?: { allowRandom?: boolean; cropSizeDefault?: boolean }) =>
    assert.throws(() => checkTransforms(list, 'data.train.transforms', opts), re);
  bad({ type: 'flip' }, /data\.train\.transforms: expected a list/);
  bad([{ type: 'flip' }, 'normalize'], /data\.train\.transforms\[1\]: expected a mapping with a type key/);
  bad([{ type: 'flipp' }], /data\.train\.transforms\[0\]\.type: "flipp" is not one of random_resize, resize/);
  bad([{ type: 'random_resize', scale_range: [2, 1] }], /\[0\]\.scale_range: expected \[lo, hi\] with 0 < lo <= hi, got \[2,1\]/);
  bad([{ type: 'random_resize', scale: [1, 2] }], /\[0\]\.scale: unknown parameter of random_resize; its parameters: scale_range, size/);
  bad([{ type: 'random_resize', short_side: 5, long_side: 9 }], /\[0\]: give one of size, short_side, long_side, not 2/);
  bad([{ type: 'gaussian_blur', kernel_size: 4 }], /\[0\]\.kernel_size: expected an odd integer, got 4/);
  bad([{ type: 'flip', prob: 2 }], /\[0\]\.prob: expected a number >= 0 and <= 1, got 2/);
  bad([{ type: 'pad', fill: 'median' }], /\[0\]\.fill: expected "mean", a number or \[r, g, b\]/);
  bad([{ type: 'normalize' }, { type: 'photometric' }], /\[1\]\.type: photometric works on 0\.\.255 pixel values, so it must come before normalize/);
  bad([{ type: 'normalize' }, { type: 'normalize' }], /\[1\]\.type: normalize appears twice/);
  bad([{ type: 'flip' }], /\[0\]\.type: flip is random; validation transforms must be deterministic/, { allowRandom: false });
  bad([{ type: 'pad' }], /\[0\]\.size: expected \[height, width\], two integers >= 1, got null/, { cropSizeDefault: false });
  bad([{ type: 'center_crop' }], /\[0\]\.size: expected \[height, width\]/);
  bad([{ type: 'random_rotate', degrees: 'ten' }], /\[0\]\.degrees: expected \[lo, hi\]/);
  const filled = checkTransforms([{ type: 'random_rotate', degrees: 10 }], 'x');
  assert.deepEqual(filled, [{ type: 'random_rotate', degrees: [-10, 10], prob: 1, fill: 'mean' }]);
});

test('the config checks both lists and names the key path', () => {
  const fails = (override: string, re: RegExp) => assert.throws(() => resolveConfig({ overrides: [override] }), (e: Error) => e instanceof ConfigError && re.test(e.message));
  fails('data.train.transforms=[{type: random_resize, scale_range: [0.5]}]', /^data\.train\.transforms\[0\]\.scale_range: expected \[lo, hi\]/);
  fails('data.val.transforms=[{type: resize, short_side: 512}, {type: flip}]', /^data\.val\.transforms\[1\]\.type: flip is random/);
  fails('data.val.transforms=[{type: pad}]', /^data\.val\.transforms\[0\]\.size: expected \[height, width\]/);
  fails('data.workers=-1', /^data\.workers: -1 is out of range \(minimum 0\)/);
  fails('data.format=coco', /^data\.format: 'coco' is not one of folder, list, voc, ade20k, cityscapes/);
  const cfg = resolveConfig({ overrides: ['data.val.transforms=[{type: resize, short_side: 360}, {type: normalize}]'] });
  assert.deepEqual(cfg.data.val.transforms, [{ type: 'resize', short_side: 360 }, { type: 'normalize' }]);
});
