// The transform lists of the config (data.train.transforms, data.val.transforms): what each op is
// called, which parameters it takes, and one checker that names the exact list item and key at fault
// (`data.train.transforms[2].scale_range: ...`). The checker returns the list with every default
// filled in, which is what src/data/augment.ts compiles and what worker threads receive.
//
// Ops, in the words a config uses (sizes are [height, width], pixel values on the 0..255 scale):
//   random_resize  scale_range [lo, hi]; base: none (the image's own size), size [h, w] (+ keep_ratio),
//                  short_side n or long_side n
//   resize         the same base without the random factor (validation: short side, keep ratio, exact)
//   random_rotate  degrees d (uniform in [-d, d]) or [lo, hi]; prob; fill for the exposed image border
//                  (the exposed label border is always the ignore index)
//   pad            size (default data.train.crop_size), fill; bottom/right; label pads with ignore
//   random_crop    size (default data.train.crop_size), cat_max_ratio, max_tries
//   center_crop    size
//   flip           prob (horizontal)
//   gaussian_blur  prob, kernel_size (odd), sigma (null: OpenCV's default for the kernel size)
//   photometric    prob of each part; brightness_delta, contrast_range, saturation_range, hue_delta
//   normalize      mean, std (null: data.mean / data.std)

export type Fill = 'mean' | number | [number, number, number];
export type Size = [number, number];

/** How a resize picks its target before the random factor (if any) is applied. */
export interface ResizeBase {
  /** [h, w]; with keep_ratio the image is fitted inside (long side to max, short side to min). */
  size: Size | null;
  keep_ratio: boolean;
  short_side: number | null;
  long_side: number | null;
}

export type TransformSpec =
  | ({ type: 'random_resize'; scale_range: [number, number] } & ResizeBase)
  | ({ type: 'resize' } & ResizeBase)
  | { type: 'random_rotate'; degrees: [number, number]; prob: number; fill: Fill }
  | { type: 'pad'; size: Size | null; fill: Fill }
  | { type: 'random_crop'; size: Size | null; cat_max_ratio: number; max_tries: number }
  | { type: 'center_crop'; size: Size }
  | { type: 'flip'; prob: number }
  | { type: 'gaussian_blur'; prob: number; kernel_size: number; sigma: number | null }
  | {
      type: 'photometric';
      prob: number;
      brightness_delta: number;
      contrast_range: [number, number];
      saturation_range: [number, number];
      hue_delta: number;
    }
  | { type: 'normalize'; mean: [number, number, number] | null; std: [number, number, number] | null };

export type TransformType = TransformSpec['type'];

/** Ops whose result depends on the rng; a validation list may not use them. */
export const RANDOM_OPS: readonly TransformType[] = ['random_resize', 'random_rotate', 'random_crop', 'flip', 'gaussian_blur', 'photometric'];

interface ParamDoc {
  default: unknown;
  doc: string;
}

/** Every op and parameter with its default: the checker's source of truth and the docs' table. */
export const TRANSFORM_OPS: Record<TransformType, { doc: string; params: Record<string, ParamDoc> }> = {
  random_resize: {
    doc: 'Resize by a random factor drawn uniformly from scale_range, relative to the base (the image itself when no base is given). Image bilinear, label nearest.',
    params: {
      scale_range: { default: [0.5, 2.0], doc: 'Factor range [lo, hi].' },
      size: { default: null, doc: '[h, w] base; with keep_ratio the image is fitted inside it (long side to the larger, short side to the smaller number).' },
      keep_ratio: { default: true, doc: 'With size: keep the aspect ratio (false: exactly size x factor).' },
      short_side: { default: null, doc: 'Base: the short side becomes short_side x factor.' },
      long_side: { default: null, doc: 'Base: the long side becomes long_side x factor.' },
    },
  },
  resize: {
    doc: 'Deterministic resize to a base (size, short_side or long_side). Image bilinear, label nearest.',
    params: {
      size: { default: null, doc: '[h, w]; with keep_ratio the image is fitted inside it.' },
      keep_ratio: { default: true, doc: 'With size: keep the aspect ratio.' },
      short_side: { default: null, doc: 'The short side becomes this.' },
      long_side: { default: null, doc: 'The long side becomes this.' },
    },
  },
  random_rotate: {
    doc: 'Rotate about the image centre by an angle drawn uniformly (degrees, counter-clockwise), same canvas. Image bilinear, label nearest; the exposed border is fill / the ignore index.',
    params: {
      degrees: { default: 10, doc: 'd for [-d, d], or [lo, hi].' },
      prob: { default: 1, doc: 'Probability of rotating.' },
      fill: { default: 'mean', doc: 'Image value of the exposed border: "mean", a number or [r, g, b].' },
    },
  },
  pad: {
    doc: 'Pad bottom/right up to size (no-op where the image is already larger). Label pads with the ignore index.',
    params: {
      size: { default: null, doc: '[h, w]; null: data.train.crop_size.' },
      fill: { default: 'mean', doc: 'Image value of the padding: "mean", a number or [r, g, b].' },
    },
  },
  random_crop: {
    doc: 'Crop a random window (at most the image size). With cat_max_ratio < 1, a window where one class covers more than that share of the labelled pixels (or only one class is present) is drawn again, up to max_tries times (mmseg).',
    params: {
      size: { default: null, doc: '[h, w]; null: data.train.crop_size.' },
      cat_max_ratio: { default: 1, doc: 'Largest share of one class; 1 disables the check.' },
      max_tries: { default: 10, doc: 'Redraws when the window is dominated by one class.' },
    },
  },
  center_crop: {
    doc: 'Crop the centre window (at most the image size).',
    params: { size: { default: undefined, doc: '[h, w] (required).' } },
  },
  flip: {
    doc: 'Horizontal flip of image and label.',
    params: { prob: { default: 0.5, doc: 'Probability of flipping.' } },
  },
  gaussian_blur: {
    doc: 'Gaussian blur of the image (label untouched), border reflected as OpenCV does.',
    params: {
      prob: { default: 0.5, doc: 'Probability of blurring.' },
      kernel_size: { default: 5, doc: 'Odd kernel size.' },
      sigma: { default: null, doc: 'Standard deviation; null: OpenCV\'s default for the kernel size (GaussianBlur(img, (k, k), 0)).' },
    },
  },
  photometric: {
    doc: 'Photometric distortion as in mmseg: brightness, contrast (before or after the colour part, at random), saturation, hue; each part applied with probability prob.',
    params: {
      prob: { default: 0.5, doc: 'Probability of each part.' },
      brightness_delta: { default: 32, doc: 'Brightness offset drawn from [-d, d] (0..255 scale).' },
      contrast_range: { default: [0.5, 1.5], doc: 'Contrast factor range.' },
      saturation_range: { default: [0.5, 1.5], doc: 'Saturation factor range.' },
      hue_delta: { default: 18, doc: 'Hue shift drawn from [-d, d] in OpenCV units (half degrees, as mmseg).' },
    },
  },
  normalize: {
    doc: '(value - mean) / std per channel.',
    params: {
      mean: { default: null, doc: 'RGB mean; null: data.mean.' },
      std: { default: null, doc: 'RGB std; null: data.std.' },
    },
  },
};

/** The training list equivalent to segdist's behaviour before transform lists existed. */
export const DEFAULT_TRAIN_TRANSFORMS: Array<Record<string, unknown>> = [
  { type: 'random_resize', scale_range: [0.5, 2.0] },
  { type: 'pad', fill: 'mean' },
  { type: 'random_crop' },
  { type: 'flip', prob: 0.5 },
  { type: 'normalize' },
];

/** Whole image, normalised. */
export const DEFAULT_VAL_TRANSFORMS: Array<Record<string, unknown>> = [{ type: 'normalize' }];

/** Thrown by checkTransforms; the message starts with the key path. */
export class TransformSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransformSpecError';
  }
}

export interface CheckTransformsOptions {
  /** false for validation lists: random ops are rejected. Default true. */
  allowRandom?: boolean;
  /** Whether a null size may fall back to data.train.crop_size. Default true. */
  cropSizeDefault?: boolean;
}

const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v));

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks a transform list and returns it with defaults filled in. Throws TransformSpecError naming `${at}[i].key`. */
export function checkTransforms(value: unknown, at: string, opts: CheckTransformsOptions = {}): TransformSpec[] {
  const allowRandom = opts.allowRandom ?? true;
  const cropDefault = opts.cropSizeDefault ?? true;
  if (!Array.isArray(value)) {
    throw new TransformSpecError(`${at}: expected a list of transforms like [{type: random_resize, scale_range: [0.5, 2.0]}, {type: normalize}], got ${show(value)}`);
  }
  const out: TransformSpec[] = [];
  let normalizeAt = -1;
  value.forEach((item, i) => {
    const where = `${at}[${i}]`;
    if (!isMapping(item)) throw new TransformSpecError(`${where}: expected a mapping with a type key, got ${show(item)}`);
    const type = item.type;
    const known = Object.keys(TRANSFORM_OPS);
    if (typeof type !== 'string' || !(type in TRANSFORM_OPS)) {
      throw new TransformSpecError(`${where}.type: ${show(type)} is not one of ${known.join(', ')}`);
    }
    const op = TRANSFORM_OPS[type as TransformType];
    for (const key of Object.keys(item)) {
      if (key !== 'type' && !(key in op.params)) {
        throw new TransformSpecError(`${where}.${key}: unknown parameter of ${type}; its parameters: ${Object.keys(op.params).join(', ') || 'none'}`);
      }
    }
    if (!allowRandom && RANDOM_OPS.includes(type as TransformType)) {
      throw new TransformSpecError(`${where}.type: ${type} is random; validation transforms must be deterministic (resize, center_crop, pad, normalize)`);
    }
    const p = new Params(item, where, op.params);
    const spec = checkOne(type as TransformType, p, where, cropDefault);
    if (spec.type === 'normalize') {
      if (normalizeAt >= 0) throw new TransformSpecError(`${where}.type: normalize appears twice (first at ${at}[${normalizeAt}])`);
      normalizeAt = i;
    } else if (spec.type === 'photometric' && normalizeAt >= 0) {
      throw new TransformSpecError(`${where}.type: photometric works on 0..255 pixel values, so it must come before normalize (${at}[${normalizeAt}])`);
    }
    out.push(spec);
  });
  return out;
}

/** Reads one op's parameters with defaults, each check naming `${where}.${key}`. */
class Params {
  constructor(
    private readonly item: Record<string, unknown>,
    private readonly where: string,
    private readonly defs: Record<string, ParamDoc>,
  ) {}

  raw(key: string): unknown {
    return key in this.item ? this.item[key] : structuredClone(this.defs[key].default);
  }

  fail(key: string, what: string): never {
    throw new TransformSpecError(`${this.where}.${key}: expected ${what}, got ${show(this.raw(key))}`);
  }

  num(key: string, min: number, max = Infinity, opts: { integer?: boolean; exclusiveMin?: boolean } = {}): number {
    const v = this.raw(key);
    const ok = typeof v === 'number' && Number.isFinite(v) && (opts.exclusiveMin ? v > min : v >= min) && v <= max && (!opts.integer || Number.isInteger(v));
    if (!ok) {
      const range = `${opts.exclusiveMin ? '>' : '>='} ${min}` + (max === Infinity ? '' : ` and <= ${max}`);
      this.fail(key, `${opts.integer ? 'an integer' : 'a number'} ${range}`);
    }
    return v as number;
  }

  prob(key: string): number {
    return this.num(key, 0, 1);
  }

  nullableInt(key: string, min: number): number | null {
    return this.raw(key) === null ? null : this.num(key, min, Infinity, { integer: true });
  }

  range(key: string, min: number, opts: { exclusiveMin?: boolean } = {}): [number, number] {
    const v = this.raw(key);
    const ok = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && (opts.exclusiveMin ? x > min : x >= min);
    if (!Array.isArray(v) || v.length !== 2 || !ok(v[0]) || !ok(v[1]) || v[0] > v[1]) {
      this.fail(key, `[lo, hi] with ${min} ${opts.exclusiveMin ? '<' : '<='} lo <= hi`);
    }
    return [v[0], v[1]];
  }

  size(key: string, nullable: boolean): Size | null {
    const v = this.raw(key);
    if (v === null && nullable) return null;
    if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 1)) {
      this.fail(key, `[height, width], two integers >= 1${nullable ? ' (or null)' : ''}`);
    }
    return [v[0], v[1]];
  }

  bool(key: string): boolean {
    const v = this.raw(key);
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }

  rgb(key: string, nullable: boolean, positive = false): [number, number, number] | null {
    const v = this.raw(key);
    if (v === null && nullable) return null;
    const ok = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0);
    if (!Array.isArray(v) || v.length !== 3 || !v.every(ok)) this.fail(key, `three ${positive ? 'positive ' : ''}numbers [r, g, b]${nullable ? ' or null' : ''}`);
    return [v[0], v[1], v[2]];
  }

  fill(key: string): Fill {
    const v = this.raw(key);
    if (v === 'mean') return 'mean';
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x))) return [v[0], v[1], v[2]];
    this.fail(key, '"mean", a number or [r, g, b]');
  }
}

function resizeBase(p: Params, where: string, required: boolean): ResizeBase {
  const size = p.size('size', true);
  const short = p.nullableInt('short_side', 1);
  const long = p.nullableInt('long_side', 1);
  const given = [size !== null, short !== null, long !== null].filter(Boolean).length;
  if (given > 1) throw new TransformSpecError(`${where}: give one of size, short_side, long_side, not ${given}`);
  if (required && given === 0) throw new TransformSpecError(`${where}: resize needs one of size, short_side, long_side`);
  return { size, keep_ratio: p.bool('keep_ratio'), short_side: short, long_side: long };
}

function checkOne(type: TransformType, p: Params, where: string, cropDefault: boolean): TransformSpec {
  const cropSize = (key: string): Size | null => p.size(key, cropDefault);
  switch (type) {
    case 'random_resize':
      return { type, scale_range: p.range('scale_range', 0, { exclusiveMin: true }), ...resizeBase(p, where, false) };
    case 'resize':
      return { type, ...resizeBase(p, where, true) };
    case 'random_rotate': {
      const d = p.raw('degrees');
      let degrees: [number, number];
      if (typeof d === 'number') {
        degrees = [-Math.abs(p.num('degrees', 0, 360)), Math.abs(d)];
      } else {
        degrees = p.range('degrees', -360);
        if (degrees[1] > 360) p.fail('degrees', 'angles within [-360, 360]');
      }
      return { type, degrees, prob: p.prob('prob'), fill: p.fill('fill') };
    }
    case 'pad':
      return { type, size: cropSize('size'), fill: p.fill('fill') };
    case 'random_crop':
      return { type, size: cropSize('size'), cat_max_ratio: p.num('cat_max_ratio', 0, 1, { exclusiveMin: true }), max_tries: p.num('max_tries', 0, 1000, { integer: true }) };
    case 'center_crop':
      return { type, size: p.size('size', false) as Size };
    case 'flip':
      return { type, prob: p.prob('prob') };
    case 'gaussian_blur': {
      const k = p.num('kernel_size', 1, 99, { integer: true });
      if (k % 2 === 0) p.fail('kernel_size', 'an odd integer');
      const sigma = p.raw('sigma') === null ? null : p.num('sigma', 0, 100, { exclusiveMin: true });
      return { type, prob: p.prob('prob'), kernel_size: k, sigma };
    }
    case 'photometric':
      return {
        type,
        prob: p.prob('prob'),
        brightness_delta: p.num('brightness_delta', 0, 255),
        contrast_range: p.range('contrast_range', 0),
        saturation_range: p.range('saturation_range', 0),
        hue_delta: p.num('hue_delta', 0, 90),
      };
    case 'normalize':
      return { type, mean: p.rgb('mean', true), std: p.rgb('std', true, true) };
  }
}
