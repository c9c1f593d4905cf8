// The learning rate as a pure function of the iteration: resume needs no scheduler state, and every
// trainer computes the same value without talking to the others.

export interface LrScheduleConfig {
  policy: 'poly' | 'constant';
  power: number;
  min_lr: number;
  warmup_iters: number;
  warmup_ratio: number;
}

/** mmseg's poly policy with linear warmup: the warmup scales the regular lr from warmup_ratio to 1. */
export function learningRate(iteration: number, maxIterations: number, baseLr: number, s: LrScheduleConfig): number {
  let lr = baseLr;
  if (s.policy === 'poly') {
    const progress = Math.min(iteration / Math.max(maxIterations, 1), 1);
    lr = (baseLr - s.min_lr) * Math.pow(1 - progress, s.power) + s.min_lr;
  }
  if (iteration < s.warmup_iters) {
    const k = (1 - iteration / s.warmup_iters) * (1 - s.warmup_ratio);
    lr *= 1 - k;
  }
  return lr;
}
