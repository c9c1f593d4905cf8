// Weight initializers, as mmcv applies them to mmseg models: Kaiming normal (fan_out, relu) for
// convolutions, normal(0, 0.01) for the classifier conv_seg, constants for BN and biases. Each is a
// pure function of (shape, rng); Module.initialize hands it an Rng keyed by the parameter's full name.

import type { Initializer } from './module';

export function constantInit(value: number): Initializer {
  return (shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value);
}

export function normalInit(std: number, mean = 0): Initializer {
  return (shape, rng) => {
    const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < out.length; i++) out[i] = mean + std * rng.normal();
    return out;
  };
}

/**
 * Kaiming/He normal for a conv weight stored HWIO, mode fan_out (kh * kw * out channels), gain
 * sqrt(2) for ReLU: PyTorch's kaiming_normal_(mode='fan_out', nonlinearity='relu'), which is what
 * mmcv's kaiming_init defaults to for both ResNet and ConvModule convolutions.
 */
export const kaimingNormalFanOut: Initializer = (shape, rng) => {
  if (shape.length !== 4) throw new Error(`Error in kaimingNormalFanOut: expected HWIO shape, got [${shape}]`);
  const [kh, kw, , cout] = shape;
  return normalInit(Math.sqrt(2 / (kh * kw * cout)))(shape, rng);
};
