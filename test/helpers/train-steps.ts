import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { EncoderDecoder } from '../../src/models/encoder-decoder';

/**
 * Three plain SGD steps of `model` on a squared-error loss (main + 0.4 aux) towards `target`. In the
 * first, every parameter must get a finite gradient and `checkGradient` sees each one; the tensor
 * count must then stay flat across steps (no leaks).
 */
export function trainThreeSteps(
  model: EncoderDecoder, x: tf.Tensor4D, target: tf.Tensor,
  checkGradient: (name: string, v: tf.Variable, grad: tf.Tensor) => void,
): void {
  const params = model.parameters();
  let baseline = -1;
  for (let it = 0; it < 3; it++) {
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => {
        const { out, aux } = model.forward(x, { training: true, seed: it });
        return tf.add(tf.mean(tf.square(tf.sub(out, target))), tf.mul(0.4, tf.mean(tf.square(tf.sub(aux!, target))))) as tf.Scalar;
      }, params);
      assert.ok(Number.isFinite(value.dataSync()[0]));
      if (it === 0) {
        for (const [name, v] of model.namedParameters()) {
          const g = grads[v.name];
          assert.ok(g !== undefined, `no gradient for ${name}`);
          assert.ok(g.dataSync().every(Number.isFinite), `non-finite gradient for ${name}`);
          checkGradient(name, v, g);
        }
      }
      for (const v of params) v.assign(tf.sub(v, tf.mul(0.01, grads[v.name])));
    });
    if (it === 0) baseline = tf.memory().numTensors;
    else assert.equal(tf.memory().numTensors, baseline, `tensors leaked in step ${it}`);
  }
}
