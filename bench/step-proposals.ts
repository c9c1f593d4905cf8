// The changes proposed for src/models (and src/train's loss), applied by patching prototypes, so that
// bench/step.ts can measure them before they are made for real. Each patch is what the proposal asks
// the owning file to do; `proposals.on` switches them all at run time so that one process can
// alternate steps with and without them (the machine is shared, so only such interleaved ratios
// mean much).
import * as tf from '@tensorflow/tfjs';
import { batchNormInfer, batchNormTrain } from '../src/backend/batch-norm';
import { conv2d } from '../src/backend/conv2d';
import { softmaxCrossEntropy } from '../src/backend/softmax-cross-entropy';
import { BatchNorm2d } from '../src/models/batch-norm';
import { Conv2d } from '../src/models/conv2d';
import { ConvModule } from '../src/models/conv-module';
import { BasicBlock } from '../src/models/basic-block';
import { ResNet } from '../src/models/resnet';
import { ReLU } from '../src/models/relu';
import type { ForwardContext } from '../src/models/context';
import type { Layer } from '../src/models/module';
import * as crossEntropyModule from '../src/train/cross-entropy';
import * as separableModule from '../src/models/separable-linear';
import { separableLinear, withSeparableGradient } from '../src/backend/separable-linear';

export const proposals = { on: false, conv: true, bn: true, loss: true, separable: true };

interface FusedOptions { relu?: boolean; residual?: tf.Tensor4D }

/** Proposal 2: BatchNorm2d.forwardFused(x, ctx, {relu, residual}) on src/backend's batchNormTrain. */
function bnForwardFused(bn: BatchNorm2d, x: tf.Tensor4D, ctx: ForwardContext, opts: FusedOptions): tf.Tensor4D {
  if (!ctx.training) {
    return batchNormInfer(x, bn.runningMean, bn.runningVar, bn.weight, bn.bias, { eps: bn.eps, ...opts });
  }
  return tf.tidy(() => {
    const { y, mean, variance, count } = batchNormTrain(x, bn.weight, bn.bias, {
      eps: bn.eps, ...opts, reducer: bn.sync ? ctx.statReducer : undefined, name: bn.path,
    });
    const m = bn.momentum;
    bn.runningMean.assign(tf.add(tf.mul(bn.runningMean, 1 - m), tf.mul(mean, m)));
    bn.runningVar.assign(tf.add(tf.mul(bn.runningVar, 1 - m), tf.mul(variance, (m * count) / (count - 1))));
    return y;
  });
}

function unfused(bn: BatchNorm2d, x: tf.Tensor4D, ctx: ForwardContext, opts: FusedOptions): tf.Tensor4D {
  return tf.tidy(() => {
    let y = bn.forward(x, ctx);
    if (opts.residual) y = tf.add(y, opts.residual);
    return opts.relu ? tf.relu(y) : y;
  });
}

function bnf(bn: BatchNorm2d, x: tf.Tensor4D, ctx: ForwardContext, opts: FusedOptions = {}): tf.Tensor4D {
  return proposals.on && proposals.bn ? bnForwardFused(bn, x, ctx, opts) : unfused(bn, x, ctx, opts);
}

let applied = false;

export function applyModelProposals(): void {
  if (applied) return;
  applied = true;

  // Proposal 1: Conv2d.forward (src/models/conv2d.ts conv2dTorch) calls src/backend's conv2d for
  // dilated convolutions instead of spaceToBatchND -> conv2d -> batchToSpaceND.
  const convForward = Conv2d.prototype.forward;
  Conv2d.prototype.forward = function (this: Conv2d, x: tf.Tensor4D): tf.Tensor4D {
    if (!(proposals.on && proposals.conv)) return convForward.call(this, x);
    const g = this.geometry;
    return tf.tidy(() => {
      const y = conv2d(x, this.weight, { stride: g.stride, padding: g.padding === 0 ? 'valid' : g.padding, dilation: g.dilation });
      return this.bias === undefined ? y : tf.add(y, this.bias);
    });
  };

  // Proposal 2: every BN followed by ReLU (and the residual add in between) fused.
  BatchNorm2d.prototype.forward = ((orig) => function (this: BatchNorm2d, x: tf.Tensor4D, ctx: ForwardContext) {
    return proposals.on && proposals.bn ? bnForwardFused(this, x, ctx, {}) : orig.call(this, x, ctx);
  })(BatchNorm2d.prototype.forward);

  ConvModule.prototype.forward = function (this: ConvModule, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => bnf(this.bn, this.conv.forward(x), ctx, { relu: true }));
  };

  BasicBlock.prototype.forward = function (this: BasicBlock, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const out = bnf(this.bn1, this.conv1.forward(x), ctx, { relu: true });
      const identity = this.downsample ? this.downsample.forward(x, ctx) : x;
      return bnf(this.bn2, this.conv2.forward(out), ctx, { relu: true, residual: identity });
    });
  };

  ResNet.prototype.forward = function (this: ResNet, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D[] {
    const self = this as unknown as { stemLayers: Layer[]; maxpool: Layer; layers: Layer[] };
    return tf.tidy(() => {
      let y = x;
      const stem = self.stemLayers.length === 1 ?
          (self.stemLayers[0] as unknown as { layers: Layer[] }).layers : self.stemLayers;
      for (let i = 0; i < stem.length; i++) {
        const layer = stem[i];
        if (layer instanceof BatchNorm2d && stem[i + 1] instanceof ReLU) {
          y = bnf(layer, y, ctx, { relu: true });
          i++;
        } else {
          y = layer.forward(y, ctx);
        }
      }
      y = self.maxpool.forward(y, ctx);
      const outs: tf.Tensor4D[] = [];
      for (const layer of self.layers) {
        y = layer.forward(y, ctx);
        outs.push(y);
      }
      return outs;
    });
  };

  // Proposal 4: src/models/separable-linear.ts's separableLinear / withSeparableGradient become
  // src/backend's (the same maps, on a kernel that walks the matrices' non-zeros).
  const sep = separableModule as {
    separableLinear: typeof separableModule.separableLinear;
    withSeparableGradient: typeof separableModule.withSeparableGradient;
  };
  const sepLinear = sep.separableLinear;
  const sepGrad = sep.withSeparableGradient;
  sep.separableLinear = (x, rows, cols) =>
    proposals.on && proposals.separable ? separableLinear(x, rows, cols) : sepLinear(x, rows, cols);
  sep.withSeparableGradient = (x, forward, rows, cols) =>
    proposals.on && proposals.separable ? withSeparableGradient(x, forward, rows, cols) : sepGrad(x, forward, rows, cols);

  // Proposal 3 (src/train/cross-entropy.ts): the loss as src/backend's softmaxCrossEntropy.
  const module = crossEntropyModule as { crossEntropy: typeof crossEntropyModule.crossEntropy };
  const ce = module.crossEntropy;
  module.crossEntropy = (logits, labels, ignoreIndex) =>
    proposals.on && proposals.loss ? softmaxCrossEntropy(logits, labels, ignoreIndex) : ce(logits, labels, ignoreIndex);
}
