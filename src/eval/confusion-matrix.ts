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
