// A change proposed for src/models, applied by patching prototypes, so that bench/step.ts can
// measure it before it is made for real. (The earlier proposals, the dilated conv, the fused loss and
// the sparse separable maps, are now the code in src/models and src/train.) Each patch is what the proposal asks
// the owning file to do; `proposals.on` switches them all at run time so that one process can
// alternate steps with and without them (the machine is shared, so only such interleaved ratios
// mean much).
import * as tf from '@tensorflow/tfjs';
import { batchNormInfer, batchNormTrain } from '../src/backend/batch-norm';
import { BatchNorm2d } from '../src/models/batch-norm';
import { ConvModule } from '../src/models/conv-module';
import { BasicBlock } from '../src/models/basic-block';
import { ResNet } from '../src/models/resnet';
import { ReLU } from '../src/models/relu';
import type { ForwardContext } from '../src/models/context';
import type { Layer } from '../src/models/module';

export const proposals = { on: false, bn: true };

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
}
