// The whole training run, top to bottom: set up, resume, then epochs of steps with logging,
// validation and checkpoints. Everything that varies per step is a pure function of the iteration
// (lr, dropout seed, data order), which is what makes resume exact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadBackend } from '../backend/load-backend';
import { CheckpointManager, loadCheckpoint } from '../checkpoint/checkpoint-manager';
import type { CheckpointState } from '../checkpoint/checkpoint-state';
import { configToYaml } from '../config/load-config';
import type { SegdistConfig } from '../config/config-types';
import { evaluate, EvalResult } from '../eval/evaluate';
import { ConfusionMatrix } from '../eval/confusion-matrix';
import type { Segmentor } from './train-step';
import type { Batch } from '../data/batch-loader';
import type { DatasetInfo } from './data-setup';
import { buildModel } from '../models/build-model';
import { deriveSeed } from '../util/rng';
import { ensureDataset, prepareData } from './data-setup';
import { formatClassTable, formatDuration, formatProgress } from './progress';
import { ConsoleRunLogger, RankRunLogger, RunLogger } from './run-logger';
import { DataParallel } from './data-parallel';
import { Sgd } from './sgd';
import { loadModelState, modelStateDict } from './state-dict';
import { TrainMetrics, TrainStats } from './train-metrics';
import { trainStep } from './train-step';
import { isImprovement, parseMonitor } from './monitor';
import { frozenStagePatterns, groupName, isFrozen, paramSettings, Stage, StagePlan } from './stage-plan';
import { BatchNorm2d } from '../models/batch-norm';
import { previewGrid } from './val-preview';
import { checkPretrainedFile, loadPretrained } from '../weights/pretrained';
import { formatReport } from '../weights/format-report';
import { NullSummaryWriter, SummaryWriter, SummaryWriterLike } from '../tensorboard/summary-writer';

export interface TrainOptions {
  /** A checkpoint directory, or 'auto' for the latest complete one in the work dir. */
  resume?: string;
  /** Set when the user asks the run to stop (SIGINT/SIGTERM); checked between steps. */
  stopSignal?: AbortSignal;
  logger?: RunLogger;
  /** TensorBoard writer; default: an event file in <work_dir>/tb/<run start time>. */
  summaryWriter?: SummaryWriterLike;
}

export interface TrainSummary {
  workDir: string;
  checkpoint: string | null;
  best: CheckpointState['best'];
  lastValidation: EvalResult | null;
  iterations: number;
  stoppedEarly: boolean;
  interrupted: boolean;
}

/** Thrown after an interrupted run has saved its checkpoint, so the command can exit 130. */
export class TrainingInterrupted extends Error {
  constructor(readonly checkpoint: string | null) {
    super(checkpoint ? `interrupted; saved ${checkpoint} (resume with --resume auto)` : 'interrupted');
  }
}

export async function train(cfg: SegdistConfig, opts: TrainOptions = {}): Promise<TrainSummary> {
  const workDir = path.resolve(cfg.work_dir);
  // Trainers started by a launcher join their job here; without launch variables this is a job of one.
  const group = await DataParallel.join({ timeoutS: cfg.dist.timeout_s, bucketMb: cfg.dist.bucket_mb, dataPlane: cfg.dist.data_plane, nativeRing: cfg.dist.native_ring });
  const lead = group.rank === 0;
  const log = opts.logger ?? (lead ? new ConsoleRunLogger(workDir) : new RankRunLogger(group.rank));
  if (group.worldSize > 1) log.info(`trainer ${group.rank} of ${group.worldSize} joined (data plane: ${group.dataPlane}${group.nativeRing ? ', native ring' : ''}); ranks other than 0 log nothing but warnings`);
  // A missing weights file is reported before any data work (only rank 0 reads it).
  if (lead && cfg.model.pretrained && !opts.resume) checkPretrainedFile(cfg.model.pretrained);
  const backend = await loadBackend(cfg.backend, (m) => log.info(m));
  // One trainer generates a missing synthetic dataset; the others would race it to the same folder.
  if (lead) await ensureDataset(cfg, (m) => log.info(m));
  await group.barrier('dataset');
  const data = await prepareData(cfg, (m) => log.info(m), { rank: group.rank, worldSize: group.worldSize });
  const info = data.info;

  const model = buildModel(cfg.model, info.num_classes, cfg.seed);
  const allParams = model.namedParameters();
  const optimizer = new Sgd(allParams, { momentum: cfg.optimizer.momentum, weightDecay: cfg.optimizer.weight_decay, nesterov: cfg.optimizer.nesterov });
  const metrics = new TrainMetrics(info.num_classes, info.ignore_index);
  // Only rank 0 writes; the others only ever read a checkpoint's path from it.
  const checkpointDir = path.join(workDir, 'checkpoints');
  const checkpoints = lead ? new CheckpointManager(checkpointDir, cfg.checkpoint.keep_last) : undefined;
  const monitor = parseMonitor(cfg.checkpoint.monitor);

  const itersPerEpoch = data.train.numBatches();
  if (itersPerEpoch === 0) throw new Error(`data.train.batch_size ${cfg.data.train.batch_size} is larger than the ${data.trainSize} training images`);
  const plan = new StagePlan(cfg, itersPerEpoch,
    frozenStagePatterns(model.backbone.stageModules, cfg.model.backbone.frozen_stages ?? -1));
  const maxIterations = plan.totalIterations;

  let state: CheckpointState = {
    format: 'segdist-checkpoint', version: 1, epoch: 0, iteration: 0, epoch_iteration: 0, max_iterations: maxIterations,
    seed: cfg.seed, lr: plan.learningRate(0), stage: plan.stageAt(0).name, best: null, stale_validations: 0,
    world_size: group.worldSize, dataset: info, config: cfg, saved_at: '',
  };
  // Rank 0 resolves and loads the checkpoint; every trainer then takes rank 0's weights, optimizer
  // state and position, so all start identical (also from a fresh init, and without a shared disk).
  const resumeFrom = lead ? (opts.resume === 'auto' ? checkpoints!.latest() : opts.resume) : undefined;
  if (lead && opts.resume === 'auto' && !resumeFrom) log.info(`--resume auto: no complete checkpoint in ${checkpointDir}; starting from scratch`);
  if (resumeFrom) {
    const ckpt = loadCheckpoint(resumeFrom);
    loadModelState(model, ckpt.model, resumeFrom);
    optimizer.loadStateDict(ckpt.optimizer, resumeFrom);
    if (ckpt.state.max_iterations !== maxIterations && ckpt.state.world_size === group.worldSize) {
      log.warn(`${resumeFrom} was written for ${ckpt.state.max_iterations} iterations, this run has ${maxIterations}; the lr schedule follows this run`);
    }
    state = { ...ckpt.state, max_iterations: maxIterations, config: cfg, dataset: info };
    if (ckpt.state.world_size !== group.worldSize) {
      // Another number of trainers: the same samples of the epoch are done, counted in this job's batches.
      const samplesDone = ckpt.state.epoch_iteration * cfg.data.train.batch_size * ckpt.state.world_size;
      state.epoch_iteration = Math.min(Math.floor(samplesDone / (cfg.data.train.batch_size * group.worldSize)), itersPerEpoch);
      state.iteration = state.epoch * itersPerEpoch + state.epoch_iteration;
      state.world_size = group.worldSize;
      log.warn(`${resumeFrom} was written by ${ckpt.state.world_size} trainer(s), this job has ${group.worldSize}: continuing at epoch ${state.epoch}, batch ${state.epoch_iteration} of ${itersPerEpoch}`);
    }
    log.info(`resumed from ${resumeFrom} at epoch ${state.epoch}, iteration ${state.iteration}`);
    if (cfg.model.pretrained) log.info(`model.pretrained (${cfg.model.pretrained}) not loaded: the resumed checkpoint's weights take precedence`);
  } else if (lead && cfg.model.pretrained) {
    // Before the broadcast below, so every trainer starts from the same imported weights.
    const report = loadPretrained(model, cfg.model);
    const [summary, ...details] = formatReport(report);
    log.info(`model.pretrained: ${summary}`);
    for (const line of details) log.info(line);
  }
  state = await group.broadcastJson('state', state);
  await group.broadcastVariables('weights', [...model.namedParameters(), ...model.namedBuffers(), ...optimizer.stateVariables()].map(([, v]) => v));

  if (lead) {
    fs.mkdirSync(workDir, { recursive: true });
    fs.writeFileSync(path.join(workDir, 'config.yaml'), configToYaml(cfg));
  }
  const tb = opts.summaryWriter ?? (lead ? new SummaryWriter(path.join(workDir, 'tb', runName())) : new NullSummaryWriter());
  tb.text('config', '```yaml\n' + configToYaml(cfg) + '```', state.iteration);
  log.info(`backend ${backend}; ${allParams.length} parameter tensors, ${countParams(allParams)} parameters`);
  log.info(`work dir ${workDir}: checkpoints in ${checkpointDir}, metrics in ${path.join(workDir, 'metrics.jsonl')}, TensorBoard events in ${path.dirname(tb.path)}`);
  log.info(`${data.trainSize} training images, ${itersPerEpoch} iterations per epoch` + (group.worldSize > 1 ? ` on each of ${group.worldSize} trainers (batch ${cfg.data.train.batch_size} each)` : '') + `, ${cfg.train.epochs} epochs (${maxIterations} iterations)`);

  const summary: TrainSummary = { workDir, checkpoint: resumeFrom ?? null, best: state.best, lastValidation: null, iterations: state.iteration, stoppedEarly: false, interrupted: false };
  // Rank 0 writes while the others wait at a barrier, so no trainer runs ahead of a save in progress.
  const save = async (): Promise<string> => {
    const where = path.join(checkpointDir, `iter_${String(state.iteration).padStart(7, '0')}`);
    if (checkpoints) {
      state.saved_at = new Date().toISOString();
      checkpoints.save(path.basename(where), { model: modelStateDict(model), optimizer: optimizer.stateDict(), state });
    }
    await group.barrier(`checkpoint.${state.iteration}`);
    summary.checkpoint = where;
    return where;
  };

  // Entering a stage: what trains, with which multipliers, and which BN layers keep their statistics.
  let stage: Stage | undefined;
  let trainable = allParams;
  const backboneNormEval = cfg.model.backbone.norm_eval ?? false;
  const enterStage = (next: Stage) => {
    stage = next;
    trainable = allParams.filter(([n]) => !isFrozen(next, n));
    optimizer.setParamSettings((n, v) => paramSettings(next, n, v));
    for (const [prefix, m] of model.namedModules()) {
      if (!(m instanceof BatchNorm2d)) continue;
      m.normEval = (backboneNormEval && prefix.startsWith('backbone.')) ||
        (next.normEval && isFrozen(next, `${prefix}.weight`) && isFrozen(next, `${prefix}.bias`));
    }
    const groups = new Map<string, number>();
    for (const [n, v] of trainable) groups.set(groupName(next, n), paramSettings(next, n, v).lrMult);
    const lrNow = plan.learningRate(Math.max(state.iteration, next.start));
    log.info(
      `stage ${next.index + 1}/${plan.stages.length} '${next.name}': iterations ${next.start}-${next.end - 1}, ` +
      `${countParams(trainable)} of ${countParams(allParams)} parameters trainable` + (next.frozen.length ? ` (frozen: ${next.frozen.join(', ')})` : '') +
      `; lr ${[...groups].map(([g, mult]) => `${g} ${(lrNow * mult).toExponential(3)}`).join(', ')}`);
    log.metrics({ kind: 'stage', stage: next.name, index: next.index, start: next.start, end: next.end, trainable: countParams(trainable), frozen: next.frozen });
  };

  const started = Date.now();
  const startIteration = state.iteration;
  try {
    for (let epoch = state.epoch; epoch < cfg.train.epochs; epoch++) {
      metrics.resetConfusion();
      metrics.resetLosses();
      log.epochStart(`epoch ${epoch + 1}/${cfg.train.epochs}`, itersPerEpoch, state.epoch_iteration);
      let lastLogAt = Date.now();
      let dataWait = 0;
      let waitStart = Date.now();
      for await (const batch of data.train.batches(epoch, state.epoch_iteration)) {
        dataWait += (Date.now() - waitStart) / 1000;
        const current = plan.stageAt(state.iteration);
        if (current !== stage) enterStage(current);
        const lr = plan.learningRate(state.iteration);
        await trainStep(model, trainable, optimizer, metrics, batch, {
          ignoreIndex: info.ignore_index,
          auxWeight: cfg.model.aux.weight,
          lr,
          ctx: { training: true, seed: deriveSeed(cfg.seed, state.iteration, group.rank), statReducer: group.statReducer },
          reduceGradients: (g) => group.averageGradients(g),
        });
        state.iteration++;
        state.epoch_iteration++;
        state.lr = lr;
        state.stage = plan.stageAt(state.iteration).name;
        log.epochTick(state.epoch_iteration);
        const endOfEpoch = state.epoch_iteration === itersPerEpoch;
        if (state.iteration % cfg.train.log_interval === 0 || endOfEpoch) {
          const s = await jobStats(metrics.read(), group);
          const m = s.confusion.metrics();
          const steps = Math.max(s.steps, 1);
          const batchTime = (Date.now() - lastLogAt) / 1000 / steps;
          const perIter = (Date.now() - started) / 1000 / Math.max(state.iteration - startIteration, 1);
          log.progress(formatProgress({
            epoch: epoch + 1, epochs: cfg.train.epochs, epochIteration: state.epoch_iteration, itersPerEpoch, iteration: state.iteration,
            loss: s.loss, lr, aAcc: m.aAcc, mIoU: m.mIoU, batchTime, dataTime: dataWait / steps, eta: perIter * (maxIterations - state.iteration),
          }));
          log.metrics({ kind: 'train', epoch: epoch + 1, iteration: state.iteration, loss: s.loss, loss_main: s.mainLoss, loss_aux: s.auxLoss, lr, aAcc: m.aAcc, mIoU: m.mIoU, batch_time: batchTime, data_time: dataWait / steps });
          const scalars: Record<string, number> = {
            'train/loss': s.loss, 'train/loss_main': s.mainLoss, 'train/loss_aux': s.auxLoss, 'train/lr': lr,
            'train/step_time': batchTime, 'train/data_time': dataWait / steps, 'train/images_per_s': batch.n / Math.max(batchTime, 1e-9),
            'train/aAcc': m.aAcc, 'train/mIoU': m.mIoU, 'train/comm_share': group.takeCommSeconds() / Math.max(batchTime * steps, 1e-9),
          };
          for (const [tag, v] of Object.entries(scalars)) tb.scalar(tag, v, state.iteration);
          for (const g of [...current.groups.map((r) => r), { pattern: 'default', lr_mult: 1 }]) tb.scalar(`train/lr/${g.pattern}`, lr * g.lr_mult, state.iteration);
          metrics.resetLosses();
          dataWait = 0;
          lastLogAt = Date.now();
        }
        // Every trainer must stop after the same step, or the others would wait for it forever.
        if (await group.anyStop(Boolean(opts.stopSignal?.aborted))) throw new TrainingInterrupted(null);
        waitStart = Date.now();
      }
      log.epochEnd();
      state.epoch = epoch + 1;
      state.epoch_iteration = 0;

      const lastEpoch = state.epoch === cfg.train.epochs;
      let stop = false;
      // With plain BN each trainer's running statistics drift apart; validation and checkpoints use
      // rank 0's everywhere (as PyTorch DDP broadcasts buffers), so every trainer scores the same model.
      await group.broadcastVariables('buffers', model.namedBuffers().map(([, v]) => v));
      if (state.epoch % cfg.train.val_interval === 0 || lastEpoch) {
        const result = await evaluateShards(model, data.val.batches(0), info, group);
        summary.lastValidation = result;
        const values: Record<string, number> = { 'val/mIoU': result.metrics.mIoU, 'val/mAcc': result.metrics.mAcc, 'val/aAcc': result.metrics.aAcc, 'val/loss': result.loss };
        log.info(`validation after epoch ${state.epoch} (${result.images} images): mIoU ${pct(result.metrics.mIoU)} mAcc ${pct(result.metrics.mAcc)} aAcc ${pct(result.metrics.aAcc)} loss ${result.loss.toFixed(4)}`);
        log.info(formatClassTable(info.class_names, result.metrics));
        log.metrics({ kind: 'val', epoch: state.epoch, iteration: state.iteration, ...values, iou: Object.fromEntries(info.class_names.map((n, k) => [n, result.metrics.iou[k]])) });
        for (const [tag, v] of Object.entries(values)) tb.scalar(tag, v, state.iteration);
        info.class_names.forEach((n, k) => tb.scalar(`val/IoU/${n}`, result.metrics.iou[k], state.iteration));
        // Only rank 0 writes TensorBoard, so only it renders the preview (a forward pass and a PNG).
        for await (const first of lead ? data.val.batches(0) : []) {
          // The first validation batch (at most 4 images): the same images after every validation.
          const k = Math.min(first.n, 4);
          const pixels = first.h * first.w;
          const few = { ...first, n: k, images: first.images.subarray(0, k * pixels * 3), labels: first.labels.subarray(0, k * pixels) };
          const grid = await previewGrid(model, few, { palette: info.palette, ignoreIndex: info.ignore_index, mean: info.mean, std: info.std });
          tb.image('val/input_truth_prediction', grid.png, grid.height, grid.width, state.iteration);
          break;
        }
        tb.flush();
        if (monitor) {
          const value = values[monitor.metric];
          if (value === undefined) throw new Error(`checkpoint.monitor: unknown metric ${monitor.metric}; known: ${Object.keys(values).join(', ')}`);
          if (isImprovement(value, state.best?.value, monitor.mode)) {
            state.best = { metric: monitor.metric, mode: monitor.mode, value, iteration: state.iteration, epoch: state.epoch };
            state.stale_validations = 0;
          } else {
            state.stale_validations++;
          }
          const patience = cfg.checkpoint.early_stop_patience;
          if (patience > 0 && state.stale_validations >= patience) {
            log.info(`early stopping: ${monitor.metric} has not improved for ${patience} validations (best ${state.best?.value.toFixed(4)} at epoch ${state.best?.epoch})`);
            stop = true;
          }
        }
      }
      if (state.epoch % cfg.checkpoint.interval === 0 || lastEpoch || stop) {
        const where = await save();
        log.info(`saved checkpoint ${where}`);
        if (state.best && state.best.iteration === state.iteration) {
          checkpoints?.markBest(where);
          log.info(`new best ${state.best.metric} ${state.best.value.toFixed(4)}: ${path.join(checkpointDir, 'best')}`);
        }
      }
      if (stop) {
        summary.stoppedEarly = true;
        break;
      }
      if (await group.anyStop(Boolean(opts.stopSignal?.aborted))) throw new TrainingInterrupted(summary.checkpoint);
    }
  } catch (e) {
    if (e instanceof TrainingInterrupted) {
      summary.interrupted = true;
      const where = cfg.checkpoint.save_on_interrupt ? await save() : summary.checkpoint;
      log.info(`interrupted at iteration ${state.iteration}${where ? `; checkpoint ${where}` : ''}`);
      throw new TrainingInterrupted(where);
    }
    throw e;
  } finally {
    metrics.dispose();
    optimizer.dispose();
    model.dispose();
    await data.close();
    tb.close();
    log.close();
    await group.close();
  }
  summary.best = state.best;
  summary.iterations = state.iteration;
  log.info(`done: ${state.iteration} iterations in ${formatDuration((Date.now() - started) / 1000)}; last checkpoint ${summary.checkpoint}` +
    (state.best ? `; best ${state.best.metric} ${state.best.value.toFixed(4)} (epoch ${state.best.epoch})` : ''));
  return summary;
}

/** Evaluates this trainer's shard and sums over all trainers: every trainer gets the metrics of the whole split. */
async function evaluateShards(model: Segmentor, batches: AsyncIterable<Batch>, info: DatasetInfo, group: DataParallel): Promise<EvalResult> {
  const local = await evaluate(model, batches, { numClasses: info.num_classes, ignoreIndex: info.ignore_index });
  if (group.worldSize === 1) return local;
  const confusion = new ConfusionMatrix(info.num_classes);
  confusion.merge(await group.sumCounts('val.confusion', local.confusion.counts));
  const [lossSum, images] = await group.sumFloats('val.loss', Float64Array.of(local.loss * local.images || 0, local.images));
  return { metrics: confusion.metrics(), loss: images ? lossSum / images : NaN, images, confusion };
}

/** This trainer's running training statistics made the job's: losses averaged, confusion summed. */
async function jobStats(local: TrainStats, group: DataParallel): Promise<TrainStats> {
  if (group.worldSize === 1) return local;
  const [loss, mainLoss, auxLoss] = await group.sumFloats('train.losses', Float64Array.of(local.loss, local.mainLoss, local.auxLoss));
  const confusion = new ConfusionMatrix(local.confusion.numClasses);
  confusion.merge(await group.sumCounts('train.confusion', local.confusion.counts));
  const n = group.worldSize;
  return { steps: local.steps, loss: loss / n, mainLoss: mainLoss / n, auxLoss: auxLoss / n, confusion };
}

/** A sortable, filesystem-safe name for this run's TensorBoard folder. */
function runName(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

const pct = (x: number) => (Number.isNaN(x) ? 'n/a' : `${(100 * x).toFixed(2)}%`);

function countParams(params: ReadonlyArray<[string, tf.Variable]>): number {
  return params.reduce((n, [, v]) => n + v.size, 0);
}
