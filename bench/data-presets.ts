// Shared by bench/data.ts and bench/data-ops.ts.

/** semseg's PSPNet training recipe (scale 0.5-2, rotate +-10 with p 0.5, 5x5 blur with p 0.5, flip, pad with the mean, crop), as data.train.transforms. */
export const PSPNET_TRANSFORMS = [
  { type: 'random_resize', scale_range: [0.5, 2.0] },
  { type: 'random_rotate', degrees: 10, prob: 0.5, fill: 'mean' },
  { type: 'gaussian_blur', prob: 0.5, kernel_size: 5 },
  { type: 'flip', prob: 0.5 },
  { type: 'pad', fill: 'mean' },
  { type: 'random_crop' },
  { type: 'normalize' },
];
