// BatchNorm2d with PyTorch semantics (eps 1e-5, momentum 0.1; normalise with the biased batch
// variance, track the unbiased one), optionally synchronised across trainers (SyncBN).
//
// Training mode has a hand-written gradient (tf.customGrad). Autodiff of the textbook formula builds
// a dozen small kernels and a Tile per layer, which on the wasm backend made BN+ReLU cost ~25x
// PyTorch's. The fused backward needs two per-channel reductions, sum(dy) and sum(dy * xhat):
//   dx = gamma * rstd * (dy - sum(dy)/M - xhat * sum(dy * xhat)/M)
//   dgamma = sum(dy * xhat),  dbeta = sum(dy)
// (the same as rstd/M * (M*g*dy - sum(g*dy) - xhat*sum(g*dy*xhat)), gamma being per channel).
//
// SyncBN: with a StatReducer the batch statistics are those of the global batch. The forward pass
// allreduces [sum(x) (C), sum(x^2) (C), element count (1)] under "<path>/fwd"; the backward pass
// allreduces [sum(dy) (C), sum(dy * xhat) (C)] under "<path>/bwd". dgamma/dbeta stay local sums:
// the trainer's gradient averaging combines them like any other parameter gradient, which gives the
// full-batch gradient. The per-rank sums are formed from a two-pass mean/variance (n*mean and
// n*(var + mean^2)) rather than by summing x^2 directly, so a channel with |mean| >> std does not lose
// its variance to float32 cancellation inside one long sum; the one remaining subtraction is done in
// float64. Without a reducer nothing is read back to JS.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext, StatReducer } from './context';
import { Module, type Layer } from './module';
import { constantInit } from './init';

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

const AXES = [0, 1, 2];

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
    const c = x.shape[3];
    if (c !== this.numFeatures) {
      throw new Error(`Error in BatchNorm2d '${this.path}': expected ${this.numFeatures} channels, got ${c}`);
    }
    if (!ctx.training || this.normEval) return this.evalForward(x);
    return this.trainForward(x, this.sync ? ctx.statReducer : undefined);
  }

  private evalForward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const scale = tf.mul(this.weight, tf.rsqrt(tf.add(this.runningVar, this.eps)));
      const shift = tf.sub(this.bias, tf.mul(this.runningMean, scale));
      return tf.add(tf.mul(x, scale), shift);
    });
  }

  private trainForward(x: tf.Tensor4D, reducer: StatReducer | undefined): tf.Tensor4D {
    const name = this.path;
    const numC = this.numFeatures;
    const eps = this.eps;
    const momentum = this.momentum;
    const localCount = x.size / numC;
    let count = localCount; // elements per channel in the (global) batch; set in forward

    const bn = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [xIn, gamma, beta] = args as tf.Tensor[];
      const save = args[3] as tf.GradSaveFunc;
      const input = xIn as tf.Tensor4D;

      let mean: tf.Tensor1D;
      let variance: tf.Tensor1D; // biased
      const localMean = tf.mean(input, AXES) as tf.Tensor1D;
      const localVar = tf.mean(tf.square(tf.sub(input, localMean)), AXES) as tf.Tensor1D;
      if (reducer === undefined) {
        mean = localMean;
        variance = localVar;
      } else {
        const m = localMean.dataSync();
        const v = localVar.dataSync();
        const msg = new Float32Array(2 * numC + 1);
        for (let i = 0; i < numC; i++) {
          msg[i] = localCount * m[i];
          msg[numC + i] = localCount * (v[i] + m[i] * m[i]);
        }
        msg[2 * numC] = localCount;
        const sums = reducer.allreduceSum(`${name}/fwd`, msg);
        if (sums.length !== msg.length) {
          throw new Error(`Error in SyncBN '${name}': reducer returned ${sums.length} values, expected ${msg.length}`);
        }
        count = sums[2 * numC];
        const gm = new Float32Array(numC);
        const gv = new Float32Array(numC);
        for (let i = 0; i < numC; i++) {
          const mu = sums[i] / count;
          gm[i] = mu;
          gv[i] = Math.max(sums[numC + i] / count - mu * mu, 0);
        }
        mean = tf.tensor1d(gm);
        variance = tf.tensor1d(gv);
      }
      if (count < 2) {
        // PyTorch refuses too; a variance of one value is meaningless and the unbiased one divides by 0.
        throw new Error(`Error in BatchNorm2d '${name}': expected more than 1 value per channel when training`);
      }

      const unbiased = tf.mul(variance, count / (count - 1));
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - momentum), tf.mul(mean, momentum)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - momentum), tf.mul(unbiased, momentum)));

      const rstd = tf.rsqrt(tf.add(variance, eps));
      const xhat = tf.mul(tf.sub(input, mean), rstd);
      const y = tf.add(tf.mul(xhat, gamma), beta) as tf.Tensor4D;
      save([xhat, rstd, gamma]);

      const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] =>
        tf.tidy(() => {
          const [sxhat, srstd, sgamma] = saved;
          const sumDy = tf.sum(dy, AXES);
          const sumDyXhat = tf.sum(tf.mul(dy, sxhat), AXES);
          let gSumDy: tf.Tensor = sumDy;
          let gSumDyXhat: tf.Tensor = sumDyXhat;
          if (reducer !== undefined) {
            const local = new Float32Array(2 * numC);
            local.set(sumDy.dataSync() as Float32Array, 0);
            local.set(sumDyXhat.dataSync() as Float32Array, numC);
            const sums = reducer.allreduceSum(`${name}/bwd`, local);
            if (sums.length !== local.length) {
              throw new Error(`Error in SyncBN '${name}': reducer returned ${sums.length} values, expected ${local.length}`);
            }
            gSumDy = tf.tensor1d(sums.slice(0, numC));
            gSumDyXhat = tf.tensor1d(sums.slice(numC));
          }
          const k = tf.mul(sgamma, srstd);
          const c1 = tf.mul(k, tf.div(gSumDy, count));
          const c2 = tf.mul(k, tf.div(gSumDyXhat, count));
          const dx = tf.sub(tf.mul(dy, k), tf.add(tf.mul(sxhat, c2), c1));
          return [dx, sumDyXhat, sumDy];
        });
      return { value: y, gradFunc };
    });
    return bn(x, this.weight, this.bias) as tf.Tensor4D;
  }
}
