// Metrics from a confusion matrix, as mmseg computes them: classes absent from both the ground truth
// and the prediction have an undefined IoU (NaN) and are left out of the mean. Counts are float64
// so that matrices summed across ranks stay exact.

export class ConfusionMatrix {
  /** counts[gt * C + pred] */
  readonly counts: Float64Array;

  constructor(readonly numClasses: number) {
    this.counts = new Float64Array(numClasses * numClasses);
  }

  /** Adds predicted and true class maps of equal length; labels equal to ignoreIndex are skipped. */
  add(pred: ArrayLike<number>, label: ArrayLike<number>, ignoreIndex: number): void {
    const c = this.numClasses;
    if (pred.length !== label.length) throw new Error(`confusion matrix: ${pred.length} predictions for ${label.length} labels`);
    for (let i = 0; i < label.length; i++) {
      const g = label[i];
      if (g === ignoreIndex) continue;
      if (g < 0 || g >= c) throw new Error(`confusion matrix: label value ${g} is outside 0..${c - 1} and not the ignore index ${ignoreIndex}`);
      this.counts[g * c + pred[i]]++;
    }
  }

  merge(other: Float64Array | ConfusionMatrix): void {
    const src = other instanceof ConfusionMatrix ? other.counts : other;
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += src[i];
  }

  metrics(): SegMetrics {
    const c = this.numClasses;
    const iou: number[] = [];
    const acc: number[] = [];
    let correct = 0;
    let total = 0;
    for (let k = 0; k < c; k++) {
      let gt = 0;
      let pr = 0;
      for (let j = 0; j < c; j++) {
        gt += this.counts[k * c + j];
        pr += this.counts[j * c + k];
      }
      const tp = this.counts[k * c + k];
      correct += tp;
      total += gt;
      const union = gt + pr - tp;
      iou.push(union > 0 ? tp / union : NaN);
      acc.push(gt > 0 ? tp / gt : NaN);
    }
    return { aAcc: total > 0 ? correct / total : NaN, mIoU: nanMean(iou), mAcc: nanMean(acc), iou, acc, pixels: total };
  }
}

export interface SegMetrics {
  /** Pixel accuracy over all labelled pixels. */
  aAcc: number;
  mIoU: number;
  mAcc: number;
  /** Per class; NaN where the class is absent from both ground truth and prediction. */
  iou: number[];
  acc: number[];
  pixels: number;
}

function nanMean(xs: number[]): number {
  const ok = xs.filter((x) => !Number.isNaN(x));
  return ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : NaN;
}

// Summing matrices across ranks. The collectives move float32, which holds integers exactly only up
// to 2^24 (17M pixels: a hundred 480x360 frames). So each count travels as five 12-bit digits: a sum of
// W ranks' digits stays below 4096 * W <= 2^24 for up to 4096 ranks, and the float64 counts rebuilt
// from the summed digits are exact (up to 2^53).

const DIGIT_BITS = 12;
const DIGITS = 5; // 60 bits >= 53
const DIGIT_BASE = 2 ** DIGIT_BITS;

/** Encodes non-negative integer counts (< 2^53) as float32 digits whose elementwise sums decode exactly. */
export function countsToDigits(counts: ArrayLike<number>): Float32Array {
  const out = new Float32Array(counts.length * DIGITS);
  for (let i = 0; i < counts.length; i++) {
    let v = counts[i];
    if (!Number.isInteger(v) || v < 0 || v > Number.MAX_SAFE_INTEGER) throw new Error(`countsToDigits: count ${v} at ${i} is not an integer in 0..2^53`);
    for (let d = 0; d < DIGITS; d++) {
      out[i * DIGITS + d] = v % DIGIT_BASE;
      v = Math.floor(v / DIGIT_BASE);
    }
  }
  return out;
}

/** Inverse of countsToDigits, also of a sum of up to 4096 encodings. */
export function digitsToCounts(digits: ArrayLike<number>): Float64Array {
  if (digits.length % DIGITS !== 0) throw new Error(`digitsToCounts: ${digits.length} digits is not a multiple of ${DIGITS}`);
  const out = new Float64Array(digits.length / DIGITS);
  for (let i = 0; i < out.length; i++) {
    let v = 0;
    for (let d = DIGITS - 1; d >= 0; d--) v = v * DIGIT_BASE + digits[i * DIGITS + d];
    out[i] = v;
  }
  return out;
}
