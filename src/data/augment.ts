// Compiles a checked transform list (augment-spec.ts) into a Transform: LoadedSample + Rng ->
// PreparedSample.
//
// Semantics are those of applying the ops one after the other to whole images, as the OpenCV
// pipelines of mmseg and semseg do; the work is not. A sample is first *planned*: every op draws its
// random parameters in list order and reports its output size, which is all the next op needs to draw
// its own. Then the output is *rendered* backwards-then-forwards: starting from the final canvas, each
// op says which rectangle of its input it needs for the rectangle asked of it (a resize needs the
// source pixels under the crop, a blur the crop plus its radius, a rotation the bounding box of the
// rotated crop), and then each op computes only that rectangle. Every output pixel is computed by the
// same arithmetic as in a whole-image pass, so the result is the same as the sequential one to the
// last bit; only the pixels that the final crop throws away are never computed. For the usual
// "resize x0.5-2, rotate, blur, crop 512" on a 2048x1024 frame that is the difference between
// megapixels and a quarter of one.
//
// Why plain JS and not libvips for the geometry (measured in bench/data-ops.ts, written up in
// docs/data.md): libvips's reducing resize anti-aliases (a wider kernel when shrinking), which is not
// the two-tap INTER_LINEAR that the reference pipelines train with; and a libvips pipeline always
// computes whole intermediate images, each op a round trip through a new pipeline, which costs more
// than the JS kernels spend on the pixels that are actually needed. Decoding stays in sharp/libvips.
//
// Images are float32 HWC RGB on the 0..255 scale until normalize; labels uint8 and only ever moved by
// nearest-neighbour sampling, so every output label value is a stored value or the ignore index.
//
// Conventions (the ones OpenCV uses, checked against it in test/data-opencv-golden.test.ts):
//   resize  half-pixel centres; bilinear clamps at the edge and does not anti-alias (cv2 INTER_LINEAR);
//           nearest takes floor((x + 0.5) * in / out) (cv2 INTER_NEAREST_EXACT)
//   rotate  about ((w-1)/2, (h-1)/2), positive = counter-clockwise on screen, same canvas
//           (cv2.getRotationMatrix2D + warpAffine, BORDER_CONSTANT); nearest rounds half up
//   blur    separable Gaussian, border reflected without repeating the edge (BORDER_REFLECT_101);
//           sigma null uses OpenCV's fixed kernels for 3, 5 and 7 taps

import type { Rng } from '../util/rng';
import { ArenaFull, lerp, mulTo, normalizeF32, simdArena } from './simd';
import type { Fill, ResizeBase, TransformSpec } from './augment-spec';
import type { LoadedSample } from './load-sample';
import { scaledSize, type PreparedSample, type Transform } from './transforms';

export interface PipelineContext {
  /** Normalisation used by normalize ops without their own mean/std, and by fill "mean". */
  mean: [number, number, number];
  std: [number, number, number];
  ignoreIndex: number;
  /** The size pad / random_crop use when theirs is null. */
  cropSize?: [number, number];
}

export interface Rect {
  top: number;
  left: number;
  height: number;
  width: number;
}

export interface ImagePatch {
  /** HWC, 3 channels, the pixels of `rect` of some canvas. */
  data: Float32Array;
  rect: Rect;
}

export interface LabelPatch {
  data: Uint8Array;
  rect: Rect;
}

/** One planned op with its random parameters fixed. */
export interface Step {
  readonly name: string;
  /** Output canvas. */
  readonly height: number;
  readonly width: number;
  /** The rectangle of the input canvas that `image(_, r)` reads (clipped to the input canvas). */
  imageNeeds(r: Rect): Rect;
  image(src: ImagePatch, r: Rect): ImagePatch;
  /** Absent for ops that leave labels alone (blur, photometric, normalize). */
  labelNeeds?(r: Rect): Rect;
  label?(src: LabelPatch, r: Rect): LabelPatch;
}

const EMPTY: Rect = { top: 0, left: 0, height: 0, width: 0 };

/**
 * Where image patches come from: plain arrays, or during renderImage the thread's SIMD arena (see
 * simd.ts), so the vector kernels can work on them in place.
 */
let allocF32: (n: number) => Float32Array = (n) => new Float32Array(n);

const isEmpty = (r: Rect): boolean => r.height <= 0 || r.width <= 0;

/** Rows y0..y1 and columns x0..x1 (inclusive) clipped to an h x w canvas. */
function clipped(y0: number, y1: number, x0: number, x1: number, h: number, w: number): Rect {
  const top = Math.max(y0, 0);
  const left = Math.max(x0, 0);
  const bottom = Math.min(y1, h - 1);
  const right = Math.min(x1, w - 1);
  if (bottom < top || right < left) return EMPTY;
  return { top, left, height: bottom - top + 1, width: right - left + 1 };
}

function fullRect(h: number, w: number): Rect {
  return { top: 0, left: 0, height: h, width: w };
}

const sameRect = (a: Rect, b: Rect): boolean => a.top === b.top && a.left === b.left && a.height === b.height && a.width === b.width;

/**
 * The part `r` of a patch that contains it. Rendering always hands a step exactly the rectangle it
 * asked for, so this is a no-op there; tests also run steps over whole canvases.
 */
function extract<T extends Float32Array | Uint8Array>(src: { data: T; rect: Rect }, r: Rect, channels: number): T {
  if (sameRect(src.rect, r)) return src.data;
  const S = src.rect;
  const n = r.height * r.width * channels;
  const out = (src.data instanceof Float32Array ? allocF32(n) : new Uint8Array(n)) as T;
  for (let y = 0; y < r.height; y++) {
    const from = ((r.top - S.top + y) * S.width + (r.left - S.left)) * channels;
    out.set(src.data.subarray(from, from + r.width * channels), y * r.width * channels);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rendering

function imageSource(sample: LoadedSample, r: Rect): ImagePatch {
  const out = allocF32(r.height * r.width * 3);
  const rowLen = r.width * 3;
  for (let y = 0; y < r.height; y++) {
    const s = ((r.top + y) * sample.width + r.left) * 3;
    const row = sample.image.subarray(s, s + rowLen);
    out.set(row, y * rowLen);
  }
  return { data: out, rect: r };
}

function labelSource(sample: LoadedSample, r: Rect): LabelPatch {
  const out = new Uint8Array(r.height * r.width);
  for (let y = 0; y < r.height; y++) {
    const s = (r.top + y) * sample.width + r.left;
    out.set(sample.label.subarray(s, s + r.width), y * r.width);
  }
  return { data: out, rect: r };
}

/** The image rectangle `out` of the canvas after `steps`. */
export function renderImage(sample: LoadedSample, steps: readonly Step[], out: Rect): ImagePatch {
  const rects = new Array<Rect>(steps.length + 1);
  rects[steps.length] = out;
  for (let i = steps.length - 1; i >= 0; i--) rects[i] = steps[i].imageNeeds(rects[i + 1]);
  const run = (): ImagePatch => {
    let patch = imageSource(sample, rects[0]);
    for (let i = 0; i < steps.length; i++) patch = steps[i].image(patch, rects[i + 1]);
    return patch;
  };
  const arena = simdArena();
  if (arena === null) return run();
  const previous = allocF32;
  allocF32 = (n) => arena.f32(n);
  try {
    for (;;) {
      arena.reset();
      try {
        // The arena is reused by the next render: hand back a copy.
        const p = run();
        return { data: p.data.slice(), rect: p.rect };
      } catch (e) {
        if (!(e instanceof ArenaFull)) throw e;
        arena.grow(e.needed);
      }
    }
  } finally {
    allocF32 = previous;
  }
}

/** The label rectangle `out` of the canvas after `steps`. */
export function renderLabel(sample: LoadedSample, steps: readonly Step[], out: Rect): LabelPatch {
  const geo = steps.filter((s) => s.label !== undefined);
  const rects = new Array<Rect>(geo.length + 1);
  rects[geo.length] = out;
  for (let i = geo.length - 1; i >= 0; i--) rects[i] = geo[i].labelNeeds!(rects[i + 1]);
  let patch = labelSource(sample, rects[0]);
  for (let i = 0; i < geo.length; i++) patch = geo[i].label!(patch, rects[i + 1]);
  return patch;
}

// ---------------------------------------------------------------------------------------------
// Resize

/** Source coordinate of output index o for bilinear sampling (half-pixel centres, clamped). */
function bilinearCoord(o: number, inSize: number, outSize: number): number {
  return Math.min(Math.max((o + 0.5) * (inSize / outSize) - 0.5, 0), inSize - 1);
}

function nearestIndex(o: number, inSize: number, outSize: number): number {
  return Math.min(Math.floor(((o + 0.5) * inSize) / outSize), inSize - 1);
}

/** Per output index (start..start+count-1): the two taps (relative to `origin`) and the weight of the second. */
function bilinearTaps(start: number, count: number, inSize: number, outSize: number, origin: number): { i0: Int32Array; i1: Int32Array; f: Float64Array } {
  const i0 = new Int32Array(count);
  const i1 = new Int32Array(count);
  const f = new Float64Array(count);
  for (let j = 0; j < count; j++) {
    const c = bilinearCoord(start + j, inSize, outSize);
    const a = Math.floor(c);
    i0[j] = a - origin;
    i1[j] = Math.min(a + 1, inSize - 1) - origin;
    f[j] = c - a;
  }
  return { i0, i1, f };
}

export class ResizeStep implements Step {
  readonly name = 'resize';
  constructor(
    private readonly inH: number,
    private readonly inW: number,
    readonly height: number,
    readonly width: number,
  ) {}

  imageNeeds(r: Rect): Rect {
    if (isEmpty(r)) return EMPTY;
    const y0 = Math.floor(bilinearCoord(r.top, this.inH, this.height));
    const y1 = Math.floor(bilinearCoord(r.top + r.height - 1, this.inH, this.height)) + 1;
    const x0 = Math.floor(bilinearCoord(r.left, this.inW, this.width));
    const x1 = Math.floor(bilinearCoord(r.left + r.width - 1, this.inW, this.width)) + 1;
    return clipped(y0, y1, x0, x1, this.inH, this.inW);
  }

  /**
   * Separable: each needed source row is interpolated along x once (JS: the taps are a gather), then
   * pairs of those rows are blended along y (SIMD where available; float32 arithmetic either way).
   */
  image(src: ImagePatch, r: Rect): ImagePatch {
    const out = allocF32(r.height * r.width * 3);
    if (isEmpty(r)) return { data: out, rect: r };
    const cols = bilinearTaps(r.left, r.width, this.inW, this.width, src.rect.left);
    const rows = bilinearTaps(r.top, r.height, this.inH, this.height, src.rect.top);
    const s = src.data;
    const stride = src.rect.width * 3;
    const rowLen = r.width * 3;
    const { i0: c0, i1: c1, f: fx } = cols;
    // Source rows (patch-relative) in use: rows.i0[0] .. rows.i1[last], monotonic.
    const firstRow = rows.i0[0];
    const lastRow = rows.i1[r.height - 1];
    const horiz = allocF32((lastRow - firstRow + 1) * rowLen);
    const wxs = Float32Array.from(fx);
    for (let y = firstRow; y <= lastRow; y++) {
      const base = y * stride;
      let o = (y - firstRow) * rowLen;
      for (let j = 0; j < r.width; j++) {
        const a = base + c0[j] * 3;
        const b = base + c1[j] * 3;
        const wx = wxs[j];
        const a0 = s[a];
        const a1 = s[a + 1];
        const a2 = s[a + 2];
        horiz[o] = a0 + Math.fround(Math.fround(s[b] - a0) * wx);
        horiz[o + 1] = a1 + Math.fround(Math.fround(s[b + 1] - a1) * wx);
        horiz[o + 2] = a2 + Math.fround(Math.fround(s[b + 2] - a2) * wx);
        o += 3;
      }
    }
    for (let i = 0; i < r.height; i++) {
      lerp(out, i * rowLen, horiz, (rows.i0[i] - firstRow) * rowLen, horiz, (rows.i1[i] - firstRow) * rowLen, rowLen, rows.f[i]);
    }
    return { data: out, rect: r };
  }

  labelNeeds(r: Rect): Rect {
    if (isEmpty(r)) return EMPTY;
    return clipped(
      nearestIndex(r.top, this.inH, this.height),
      nearestIndex(r.top + r.height - 1, this.inH, this.height),
      nearestIndex(r.left, this.inW, this.width),
      nearestIndex(r.left + r.width - 1, this.inW, this.width),
      this.inH,
      this.inW,
    );
  }

  label(src: LabelPatch, r: Rect): LabelPatch {
    const out = new Uint8Array(r.height * r.width);
    const cols = new Int32Array(r.width);
    for (let j = 0; j < r.width; j++) cols[j] = nearestIndex(r.left + j, this.inW, this.width) - src.rect.left;
    for (let i = 0; i < r.height; i++) {
      const row = (nearestIndex(r.top + i, this.inH, this.height) - src.rect.top) * src.rect.width;
      const o = i * r.width;
      for (let j = 0; j < r.width; j++) out[o + j] = src.data[row + cols[j]];
    }
    return { data: out, rect: r };
  }
}

/** The size an (h, w) image is resized to for base `base` and factor `s`. */
export function resizeTarget(h: number, w: number, base: ResizeBase, s: number): [number, number] {
  const r = (x: number) => Math.max(1, Math.round(x));
  if (base.short_side !== null) {
    const f = (base.short_side * s) / Math.min(h, w);
    return [r(h * f), r(w * f)];
  }
  if (base.long_side !== null) {
    const f = (base.long_side * s) / Math.max(h, w);
    return [r(h * f), r(w * f)];
  }
  return scaledSize(h, w, s, base.size ?? undefined, base.keep_ratio);
}

// ---------------------------------------------------------------------------------------------
// Rotate

export class RotateStep implements Step {
  readonly name = 'rotate';
  /** Inverse map, output (x, y) -> input (a*x + b*y + c, d*x + e*y + f). */
  private readonly m: [number, number, number, number, number, number];

  constructor(
    readonly height: number,
    readonly width: number,
    readonly degrees: number,
    private readonly fill: [number, number, number],
    private readonly ignoreIndex: number,
  ) {
    // The forward matrix of cv2.getRotationMatrix2D(centre, degrees, 1), inverted in double as
    // cv2.warpAffine does.
    const t = (degrees * Math.PI) / 180;
    const alpha = Math.cos(t);
    const beta = Math.sin(t);
    const cx = (width - 1) / 2;
    const cy = (height - 1) / 2;
    const m02 = (1 - alpha) * cx - beta * cy;
    const m12 = beta * cx + (1 - alpha) * cy;
    const det = alpha * alpha + beta * beta;
    const a = alpha / det;
    const b = -beta / det;
    const d = beta / det;
    const e = alpha / det;
    this.m = [a, b, -(a * m02 + b * m12), d, e, -(d * m02 + e * m12)];
  }

  /** Bounding box of the input coordinates of r's corners, widened by `margin`, clipped. */
  private needs(r: Rect, round: (v: number) => number, lowMargin: number, highMargin: number): Rect {
    if (isEmpty(r)) return EMPTY;
    const [a, b, c, d, e, f] = this.m;
    let xmin = Infinity;
    let xmax = -Infinity;
    let ymin = Infinity;
    let ymax = -Infinity;
    for (const y of [r.top, r.top + r.height - 1]) {
      for (const x of [r.left, r.left + r.width - 1]) {
        const sx = a * x + b * y + c;
        const sy = d * x + e * y + f;
        xmin = Math.min(xmin, sx);
        xmax = Math.max(xmax, sx);
        ymin = Math.min(ymin, sy);
        ymax = Math.max(ymax, sy);
      }
    }
    // The margin covers floating-point differences between corner and interior evaluations.
    return clipped(round(ymin) - lowMargin, round(ymax) + highMargin, round(xmin) - lowMargin, round(xmax) + highMargin, this.height, this.width);
  }

  imageNeeds(r: Rect): Rect {
    return this.needs(r, Math.floor, 1, 2);
  }

  image(src: ImagePatch, r: Rect): ImagePatch {
    const out = allocF32(r.height * r.width * 3);
    const [a, b, c, d, e, f] = this.m;
    const H = this.height;
    const W = this.width;
    const s = src.data;
    const sTop = src.rect.top;
    const sLeft = src.rect.left;
    const stride = src.rect.width * 3;
    const [f0, f1, f2] = this.fill;
    const tap = (x: number, y: number, ch: number): number =>
      x >= 0 && x < W && y >= 0 && y < H ? s[(y - sTop) * stride + (x - sLeft) * 3 + ch] : ch === 0 ? f0 : ch === 1 ? f1 : f2;
    let o = 0;
    for (let i = 0; i < r.height; i++) {
      const y = r.top + i;
      for (let j = 0; j < r.width; j++) {
        const x = r.left + j;
        const sx = a * x + b * y + c;
        const sy = d * x + e * y + f;
        const x0 = Math.floor(sx);
        const y0 = Math.floor(sy);
        const wx = sx - x0;
        const wy = sy - y0;
        if (x0 >= 0 && y0 >= 0 && x0 + 1 < W && y0 + 1 < H) {
          const p0 = (y0 - sTop) * stride + (x0 - sLeft) * 3;
          const p1 = p0 + stride;
          const t0 = s[p0] + (s[p0 + 3] - s[p0]) * wx;
          const t1 = s[p0 + 1] + (s[p0 + 4] - s[p0 + 1]) * wx;
          const t2 = s[p0 + 2] + (s[p0 + 5] - s[p0 + 2]) * wx;
          const u0 = s[p1] + (s[p1 + 3] - s[p1]) * wx;
          const u1 = s[p1 + 1] + (s[p1 + 4] - s[p1 + 1]) * wx;
          const u2 = s[p1 + 2] + (s[p1 + 5] - s[p1 + 2]) * wx;
          out[o] = t0 + (u0 - t0) * wy;
          out[o + 1] = t1 + (u1 - t1) * wy;
          out[o + 2] = t2 + (u2 - t2) * wy;
        } else if (x0 + 1 < 0 || y0 + 1 < 0 || x0 >= W || y0 >= H) {
          out[o] = f0;
          out[o + 1] = f1;
          out[o + 2] = f2;
        } else {
          for (let ch = 0; ch < 3; ch++) {
            const t = tap(x0, y0, ch) + (tap(x0 + 1, y0, ch) - tap(x0, y0, ch)) * wx;
            const u = tap(x0, y0 + 1, ch) + (tap(x0 + 1, y0 + 1, ch) - tap(x0, y0 + 1, ch)) * wx;
            out[o + ch] = t + (u - t) * wy;
          }
        }
        o += 3;
      }
    }
    return { data: out, rect: r };
  }

  labelNeeds(r: Rect): Rect {
    return this.needs(r, (v) => Math.floor(v + 0.5), 1, 1);
  }

  label(src: LabelPatch, r: Rect): LabelPatch {
    const out = new Uint8Array(r.height * r.width).fill(this.ignoreIndex);
    const [a, b, c, d, e, f] = this.m;
    const sw = src.rect.width;
    for (let i = 0; i < r.height; i++) {
      const y = r.top + i;
      for (let j = 0; j < r.width; j++) {
        const x = r.left + j;
        const xi = Math.floor(a * x + b * y + c + 0.5);
        const yi = Math.floor(d * x + e * y + f + 0.5);
        if (xi >= 0 && xi < this.width && yi >= 0 && yi < this.height) {
          out[i * r.width + j] = src.data[(yi - src.rect.top) * sw + (xi - src.rect.left)];
        }
      }
    }
    return { data: out, rect: r };
  }
}

// ---------------------------------------------------------------------------------------------
// Pad, crop, flip

export class PadStep implements Step {
  readonly name = 'pad';
  constructor(
    private readonly inH: number,
    private readonly inW: number,
    readonly height: number,
    readonly width: number,
    private readonly fill: [number, number, number],
    private readonly ignoreIndex: number,
  ) {}

  imageNeeds(r: Rect): Rect {
    if (isEmpty(r)) return EMPTY;
    return clipped(r.top, r.top + r.height - 1, r.left, r.left + r.width - 1, this.inH, this.inW);
  }

  image(src: ImagePatch, r: Rect): ImagePatch {
    const out = allocF32(r.height * r.width * 3);
    for (let i = 0; i < out.length; i += 3) {
      out[i] = this.fill[0];
      out[i + 1] = this.fill[1];
      out[i + 2] = this.fill[2];
    }
    const s = this.imageNeeds(r);
    const inside = extract(src, s, 3);
    for (let y = 0; y < s.height; y++) {
      const from = y * s.width * 3;
      out.set(inside.subarray(from, from + s.width * 3), ((s.top - r.top + y) * r.width + (s.left - r.left)) * 3);
    }
    return { data: out, rect: r };
  }

  labelNeeds(r: Rect): Rect {
    return this.imageNeeds(r);
  }

  label(src: LabelPatch, r: Rect): LabelPatch {
    const out = new Uint8Array(r.height * r.width).fill(this.ignoreIndex);
    const s = this.imageNeeds(r);
    const inside = extract(src, s, 1);
    for (let y = 0; y < s.height; y++) {
      out.set(inside.subarray(y * s.width, (y + 1) * s.width), (s.top - r.top + y) * r.width + (s.left - r.left));
    }
    return { data: out, rect: r };
  }
}

export class CropStep implements Step {
  readonly name = 'crop';
  constructor(
    readonly top: number,
    readonly left: number,
    readonly height: number,
    readonly width: number,
  ) {}

  imageNeeds(r: Rect): Rect {
    if (isEmpty(r)) return EMPTY;
    return { top: r.top + this.top, left: r.left + this.left, height: r.height, width: r.width };
  }

  /** When rendering, the input patch is exactly the shifted rectangle: same pixels, new coordinates. */
  image(src: ImagePatch, r: Rect): ImagePatch {
    return { data: extract(src, this.imageNeeds(r), 3), rect: r };
  }

  labelNeeds(r: Rect): Rect {
    return this.imageNeeds(r);
  }

  label(src: LabelPatch, r: Rect): LabelPatch {
    return { data: extract(src, this.imageNeeds(r), 1), rect: r };
  }
}

export class FlipStep implements Step {
  readonly name = 'flip';
  constructor(
    readonly height: number,
    readonly width: number,
  ) {}

  imageNeeds(r: Rect): Rect {
    if (isEmpty(r)) return EMPTY;
    return { top: r.top, left: this.width - r.left - r.width, height: r.height, width: r.width };
  }

  image(src: ImagePatch, r: Rect): ImagePatch {
    const out = allocF32(r.height * r.width * 3);
    const w = r.width;
    const s = extract(src, this.imageNeeds(r), 3);
    for (let i = 0; i < r.height; i++) {
      const base = i * w * 3;
      for (let j = 0; j < w; j++) {
        const d = base + j * 3;
        const p = base + (w - 1 - j) * 3;
        out[d] = s[p];
        out[d + 1] = s[p + 1];
        out[d + 2] = s[p + 2];
      }
    }
    return { data: out, rect: r };
  }

  labelNeeds(r: Rect): Rect {
    return this.imageNeeds(r);
  }

  label(src: LabelPatch, r: Rect): LabelPatch {
    const out = new Uint8Array(r.height * r.width);
    const w = r.width;
    const s = extract(src, this.imageNeeds(r), 1);
    for (let i = 0; i < r.height; i++) for (let j = 0; j < w; j++) out[i * w + j] = s[i * w + (w - 1 - j)];
    return { data: out, rect: r };
  }
}

// ---------------------------------------------------------------------------------------------
// Gaussian blur

/** OpenCV's kernels for GaussianBlur(img, (k, k), 0) with k = 1, 3, 5, 7. */
const FIXED_GAUSSIAN: Record<number, number[]> = {
  1: [1],
  3: [0.25, 0.5, 0.25],
  5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
  7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
};

export function gaussianKernel(size: number, sigma: number | null): Float64Array {
  if (sigma === null && FIXED_GAUSSIAN[size]) return Float64Array.from(FIXED_GAUSSIAN[size]);
  const s = sigma ?? 0.3 * ((size - 1) * 0.5 - 1) + 0.8;
  const k = new Float64Array(size);
  const c = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    k[i] = Math.exp(-((i - c) ** 2) / (2 * s * s));
    sum += k[i];
  }
  for (let i = 0; i < size; i++) k[i] /= sum;
  return k;
}

/** Index i mirrored into 0..n-1 without repeating the edge pixel (… 2 1 | 0 1 2 … n-1 | n-2 …). */
function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

export class BlurStep implements Step {
  readonly name = 'gaussian_blur';
  private readonly radius: number;
  constructor(
    readonly height: number,
    readonly width: number,
    private readonly kernel: Float64Array,
  ) {
    this.radius = (kernel.length - 1) / 2;
  }

  imageNeeds(r: Rect): Rect {
    if (isEmpty(r)) return EMPTY;
    const k = this.radius;
    return clipped(r.top - k, r.top + r.height - 1 + k, r.left - k, r.left + r.width - 1 + k, this.height, this.width);
  }

  image(src: ImagePatch, r: Rect): ImagePatch {
    const k = this.radius;
    const K = this.kernel.length;
    const kern = this.kernel;
    const S = src.rect;
    const s = src.data;
    const rowLen = r.width * 3;
    // Horizontal pass over every patch row, only the output columns: copy the row's span with its
    // reflected border into `line`, then accumulate tap by tap into `tmp` (float32, in tap order).
    const line = allocF32((r.width + 2 * k) * 3);
    const srcCol = new Int32Array(r.width + 2 * k);
    for (let j = 0; j < srcCol.length; j++) srcCol[j] = (reflect101(r.left - k + j, this.width) - S.left) * 3;
    const tmp = allocF32(S.height * rowLen);
    for (let y = 0; y < S.height; y++) {
      const rowBase = y * S.width * 3;
      for (let j = 0; j < srcCol.length; j++) {
        const p = rowBase + srcCol[j];
        line[3 * j] = s[p];
        line[3 * j + 1] = s[p + 1];
        line[3 * j + 2] = s[p + 2];
      }
      for (let t = 0; t < K; t++) mulTo(tmp, y * rowLen, line, 3 * t, rowLen, kern[t], t > 0);
    }
    // Vertical pass, tap by tap over whole rows.
    const out = allocF32(r.height * rowLen);
    for (let i = 0; i < r.height; i++) {
      for (let t = 0; t < K; t++) mulTo(out, i * rowLen, tmp, (reflect101(r.top + i + t - k, this.height) - S.top) * rowLen, rowLen, kern[t], t > 0);
    }
    return { data: out, rect: r };
  }
}

// ---------------------------------------------------------------------------------------------
// Pixel-wise: photometric distortion and normalisation (in place: every patch is owned by the pipeline)

export interface PhotometricParams {
  /** Added to every channel, or null. */
  brightness: number | null;
  /** Multiplies every channel, or null; applied before the colour part when contrastFirst. */
  contrast: number | null;
  contrastFirst: boolean;
  saturation: number | null;
  /** Hue shift in degrees, or null. */
  hue: number | null;
}

const clip255 = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);

export function photometricInPlace(d: Float32Array, p: PhotometricParams): void {
  const n = d.length;
  if (p.brightness !== null) for (let i = 0; i < n; i++) d[i] = clip255(d[i] + p.brightness);
  if (p.contrast !== null && p.contrastFirst) for (let i = 0; i < n; i++) d[i] = clip255(d[i] * p.contrast);
  if (p.saturation !== null || p.hue !== null) {
    const sat = p.saturation ?? 1;
    const hueShift = p.hue ?? 0;
    for (let i = 0; i < n; i += 3) {
      // RGB -> HSV (h in degrees, s in 0..1, v in 0..255), adjust, back.
      const r = d[i];
      const g = d[i + 1];
      const b = d[i + 2];
      const v = Math.max(r, g, b);
      const delta = v - Math.min(r, g, b);
      let s = v === 0 ? 0 : delta / v;
      let h = 0;
      if (delta > 0) {
        if (v === r) h = (60 * (g - b)) / delta;
        else if (v === g) h = 120 + (60 * (b - r)) / delta;
        else h = 240 + (60 * (r - g)) / delta;
      }
      s = Math.min(s * sat, 1);
      h = (((h + hueShift) % 360) + 360) % 360;
      const c = v * s;
      const hh = h / 60;
      const x = c * (1 - Math.abs((hh % 2) - 1));
      const m = v - c;
      let rr = m;
      let gg = m;
      let bb = m;
      if (hh < 1) {
        rr += c;
        gg += x;
      } else if (hh < 2) {
        rr += x;
        gg += c;
      } else if (hh < 3) {
        gg += c;
        bb += x;
      } else if (hh < 4) {
        gg += x;
        bb += c;
      } else if (hh < 5) {
        rr += x;
        bb += c;
      } else {
        rr += c;
        bb += x;
      }
      d[i] = rr;
      d[i + 1] = gg;
      d[i + 2] = bb;
    }
  }
  if (p.contrast !== null && !p.contrastFirst) for (let i = 0; i < n; i++) d[i] = clip255(d[i] * p.contrast);
}

class PointStep implements Step {
  constructor(
    readonly name: string,
    readonly height: number,
    readonly width: number,
    private readonly apply: (d: Float32Array) => void,
  ) {}

  imageNeeds(r: Rect): Rect {
    return r;
  }

  /** In place: every patch a render passes along is owned by that render. */
  image(src: ImagePatch, r: Rect): ImagePatch {
    const data = sameRect(src.rect, r) ? src.data : extract(src, r, 3);
    this.apply(data);
    return { data, rect: r };
  }
}

function normalizeData(d: Float32Array, mean: readonly number[], std: readonly number[]): void {
  normalizeF32(d, mean, std);
}

// ---------------------------------------------------------------------------------------------
// Planning

/** Counts of each label value in a patch, ignoring `ignore`: [largest count, total, distinct]. */
function classBalance(labels: Uint8Array, ignore: number): { max: number; total: number; distinct: number } {
  const counts = new Uint32Array(256);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  counts[ignore] = 0;
  let max = 0;
  let total = 0;
  let distinct = 0;
  for (let v = 0; v < 256; v++) {
    if (counts[v] === 0) continue;
    distinct++;
    total += counts[v];
    if (counts[v] > max) max = counts[v];
  }
  return { max, total, distinct };
}

interface PlanInput {
  h: number;
  w: number;
  rng: Rng;
  /** The current canvas's label in a rectangle (rendered through the steps planned so far). */
  labelAt: (r: Rect) => Uint8Array;
}

type Planner = (p: PlanInput) => Step | null;

function cropWindow(h: number, w: number, ch: number, cw: number, rng: Rng): Rect {
  // Offsets only range over what exceeds the crop (mmseg's RandomCrop): a smaller side is taken whole.
  const top = rng.int(Math.max(h - ch, 0) + 1);
  const left = rng.int(Math.max(w - cw, 0) + 1);
  return { top, left, height: Math.min(ch, h), width: Math.min(cw, w) };
}

function plannerFor(spec: TransformSpec, ctx: PipelineContext, norm: { mean: number[]; std: number[] } | null): Planner {
  // Fill values are given on the 0..255 scale; after a normalize op they are normalised too.
  const fillOf = (f: Fill): [number, number, number] => {
    const raw: [number, number, number] = f === 'mean' ? [...ctx.mean] : typeof f === 'number' ? [f, f, f] : [...f];
    if (norm === null) return raw;
    if (f === 'mean') return [0, 0, 0];
    return [0, 1, 2].map((c) => (raw[c] - norm.mean[c]) / norm.std[c]) as [number, number, number];
  };
  const sizeOf = (s: [number, number] | null, op: string): [number, number] => {
    const v = s ?? ctx.cropSize;
    if (v === undefined) throw new Error(`${op}: no size given and no crop size to default to`);
    return v;
  };
  switch (spec.type) {
    case 'random_resize':
      return ({ h, w, rng }) => {
        const s = rng.uniform(spec.scale_range[0], spec.scale_range[1]);
        const [nh, nw] = resizeTarget(h, w, spec, s);
        return nh === h && nw === w ? null : new ResizeStep(h, w, nh, nw);
      };
    case 'resize':
      return ({ h, w }) => {
        const [nh, nw] = resizeTarget(h, w, spec, 1);
        return nh === h && nw === w ? null : new ResizeStep(h, w, nh, nw);
      };
    case 'random_rotate': {
      const fill = fillOf(spec.fill);
      return ({ h, w, rng }) => {
        const apply = rng.next() < spec.prob;
        const angle = rng.uniform(spec.degrees[0], spec.degrees[1]);
        return apply && angle !== 0 ? new RotateStep(h, w, angle, fill, ctx.ignoreIndex) : null;
      };
    }
    case 'pad': {
      const fill = fillOf(spec.fill);
      const [ph, pw] = sizeOf(spec.size, 'pad');
      return ({ h, w }) => (h >= ph && w >= pw ? null : new PadStep(h, w, Math.max(h, ph), Math.max(w, pw), fill, ctx.ignoreIndex));
    }
    case 'random_crop': {
      const [ch, cw] = sizeOf(spec.size, 'random_crop');
      return ({ h, w, rng, labelAt }) => {
        let win = cropWindow(h, w, ch, cw, rng);
        if (spec.cat_max_ratio < 1) {
          for (let t = 0; t < spec.max_tries; t++) {
            const b = classBalance(labelAt(win), ctx.ignoreIndex);
            if (b.distinct > 1 && b.max / b.total < spec.cat_max_ratio) break;
            win = cropWindow(h, w, ch, cw, rng);
          }
        }
        return win.height === h && win.width === w ? null : new CropStep(win.top, win.left, win.height, win.width);
      };
    }
    case 'center_crop': {
      const [ch, cw] = spec.size;
      return ({ h, w }) => {
        const ho = Math.min(ch, h);
        const wo = Math.min(cw, w);
        return ho === h && wo === w ? null : new CropStep(Math.floor((h - ho) / 2), Math.floor((w - wo) / 2), ho, wo);
      };
    }
    case 'flip':
      return ({ h, w, rng }) => (rng.next() < spec.prob ? new FlipStep(h, w) : null);
    case 'gaussian_blur': {
      const kernel = gaussianKernel(spec.kernel_size, spec.sigma);
      return ({ h, w, rng }) => (rng.next() < spec.prob && spec.kernel_size > 1 ? new BlurStep(h, w, kernel) : null);
    }
    case 'photometric':
      return ({ h, w, rng }) => {
        // Every draw is made whether or not its part applies, so the number of draws is fixed.
        const gate = () => rng.next() < spec.prob;
        const b = gate();
        const bv = rng.uniform(-spec.brightness_delta, spec.brightness_delta);
        const contrastFirst = rng.next() < 0.5;
        const c = gate();
        const cv = rng.uniform(spec.contrast_range[0], spec.contrast_range[1]);
        const s = gate();
        const sv = rng.uniform(spec.saturation_range[0], spec.saturation_range[1]);
        const hu = gate();
        const hv = rng.uniform(-spec.hue_delta, spec.hue_delta) * 2; // OpenCV hue units are 2 degrees
        const p: PhotometricParams = { brightness: b ? bv : null, contrast: c ? cv : null, contrastFirst, saturation: s ? sv : null, hue: hu ? hv : null };
        if (!b && !c && !s && !hu) return null;
        return new PointStep('photometric', h, w, (d) => photometricInPlace(d, p));
      };
    case 'normalize': {
      const mean = spec.mean ?? ctx.mean;
      const std = spec.std ?? ctx.std;
      return ({ h, w }) => new PointStep('normalize', h, w, (d) => normalizeData(d, mean, std));
    }
  }
}

/** A planned sample: its steps and final size. Exposed for tests and the benchmark. */
export interface Plan {
  steps: Step[];
  height: number;
  width: number;
}

/** Compiles a checked transform list. The result is a pure function of (sample, rng state). */
export function compileTransforms(specs: readonly TransformSpec[], ctx: PipelineContext): Transform & { plan(sample: LoadedSample, rng: Rng): Plan } {
  if (ctx.mean.length !== 3 || ctx.std.length !== 3 || ctx.std.some((s) => !(s > 0))) {
    throw new Error(`compileTransforms: needs 3 means and 3 positive stds, got mean ${JSON.stringify(ctx.mean)} std ${JSON.stringify(ctx.std)}`);
  }
  let norm: { mean: number[]; std: number[] } | null = null;
  const planners: Planner[] = [];
  for (const spec of specs) {
    planners.push(plannerFor(spec, ctx, norm));
    if (spec.type === 'normalize') norm = { mean: spec.mean ?? ctx.mean, std: spec.std ?? ctx.std };
  }
  const plan = (sample: LoadedSample, rng: Rng): Plan => {
    const steps: Step[] = [];
    let h = sample.height;
    let w = sample.width;
    const labelAt = (r: Rect) => renderLabel(sample, steps, r).data;
    for (const planner of planners) {
      const step = planner({ h, w, rng, labelAt });
      if (step === null) continue;
      steps.push(step);
      h = step.height;
      w = step.width;
    }
    return { steps, height: h, width: w };
  };
  const transform = (sample: LoadedSample, rng: Rng): PreparedSample => {
    const { steps, height, width } = plan(sample, rng);
    const out = fullRect(height, width);
    let image = renderImage(sample, steps, out).data;
    // Only when no step produced a fresh array could the result share memory with a caller's array.
    if (image.buffer.byteLength !== image.byteLength) image = image.slice();
    const label = Int32Array.from(renderLabel(sample, steps, out).data);
    return { image, label, height, width };
  };
  return Object.assign(transform, { plan });
}
