// BatchNorm2d with PyTorch semantics (eps 1e-5, momentum 0.1; normalise with the biased batch
// variance, track the unbiased one), optionally synchronised across trainers (SyncBN).
//
// The arithmetic is src/backend's batchNormTrain / batchNormInfer: a hand-written gradient (autodiff
// of the textbook formula builds a dozen small kernels and a Tile per layer, ~25x PyTorch's BN+ReLU on
// wasm), one kernel per pass on wasm and cpu, and SyncBN's allreduce of [sum(x), sum(x^2), count]
// forward and [sum(dy), sum(dy * xhat)] backward. forwardFused also takes the ReLU and a residual
// block's shortcut add that follow most BNs into the same kernels: each would otherwise be a full
// pass over the activation forward and another backward (~11% of a PSPNet-ResNet-18 step on wasm).

import * as tf from '@tensorflow/tfjs';
import { batchNormInfer, batchNormTrain } from '../backend/batch-norm';
import type { ForwardContext } from './context';
import { Module, type Layer } from './module';
import { constantInit } from './init';

/** What forwardFused folds in after the normalisation: a residual add, then a ReLU. */
export interface FusedOptions {
  relu?: boolean;
  residual?: tf.Tensor4D;
}

export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
  /**
   * Use ctx.statReducer when one is present (model.norm = syncbn). False for plain BN, which then
   * ignores a reducer: the model config, not the trainer, decides what kind of norm a layer is.
   */
  sync?: boolean;
  /** Initial weight (gamma); 0 for the last BN of a residual block under zero_init_residual. */
  gammaInit?: number;
}

export class BatchNorm2d extends Module implements Layer {
  readonly weight: tf.Variable<tf.Rank.R1>;
  readonly bias: tf.Variable<tf.Rank.R1>;
  readonly runningMean: tf.Variable<tf.Rank.R1>;
  readonly runningVar: tf.Variable<tf.Rank.R1>;
  readonly eps: number;
  readonly momentum: number;
  readonly sync: boolean;
  /**
   * Use the running statistics even when training (mmseg's norm_eval): set by the trainer on the BN
   * layers of frozen parts, whose statistics should stay those of the weights they were trained with.
   */
  normEval = false;

  constructor(readonly numFeatures: number, opts: BatchNormOptions = {}) {
    super();
    this.eps = opts.eps ?? 1e-5;
    this.momentum = opts.momentum ?? 0.1;
    this.sync = opts.sync ?? false;
    this.weight = this.registerParameter('weight', [numFeatures], constantInit(opts.gammaInit ?? 1)) as tf.Variable<tf.Rank.R1>;
    this.bias = this.registerParameter('bias', [numFeatures], constantInit(0)) as tf.Variable<tf.Rank.R1>;
    this.runningMean = this.registerBuffer('running_mean', [numFeatures], constantInit(0)) as tf.Variable<tf.Rank.R1>;
    this.runningVar = this.registerBuffer('running_var', [numFeatures], constantInit(1)) as tf.Variable<tf.Rank.R1>;
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return this.forwardFused(x, ctx);
  }

  /** relu(bn(x) + residual), each part optional, as one op forward and one backward. */
  forwardFused(x: tf.Tensor4D, ctx: ForwardContext, opts: FusedOptions = {}): tf.Tensor4D {
    const c = x.shape[3];
    if (c !== this.numFeatures) {
      throw new Error(`Error in BatchNorm2d '${this.path}': expected ${this.numFeatures} channels, got ${c}`);
    }
    if (!ctx.training) {
      return batchNormInfer(x, this.runningMean, this.runningVar, this.weight, this.bias, { eps: this.eps, ...opts });
    }
    if (this.normEval) return this.frozenForward(x, opts);
    return tf.tidy(() => {
      const { y, mean, variance, count } = batchNormTrain(x, this.weight, this.bias, {
        eps: this.eps, ...opts, reducer: this.sync ? ctx.statReducer : undefined, name: this.path,
      });
      const m = this.momentum;
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - m), tf.mul(mean, m)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - m), tf.mul(variance, (m * count) / (count - 1))));
      return y;
    });
  }

  /**
   * Running statistics while training (norm_eval): from differentiable ops, because layers before a
   * frozen BN may still train and need the gradient through it (batchNormInfer's kernel has none).
   */
  private frozenForward(x: tf.Tensor4D, opts: FusedOptions): tf.Tensor4D {
    return tf.tidy(() => {
      const scale = tf.mul(this.weight, tf.rsqrt(tf.add(this.runningVar, this.eps)));
      let y = tf.add(tf.mul(x, scale), tf.sub(this.bias, tf.mul(this.runningMean, scale)));
      if (opts.residual !== undefined) y = tf.add(y, opts.residual);
      return (opts.relu ? tf.relu(y) : y) as tf.Tensor4D;
    });
  }
}
