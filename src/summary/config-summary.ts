// `segdist model summary`: the model a config builds, summarised at an input size, with the first
// training stage's frozen parameters (its `frozen` patterns and the backbone's frozen_stages) counted
// as not trainable: what that stage will train.
import { loadBackend } from '../backend/load-backend';
import { resolveConfig } from '../config/load-config';
import { buildModel } from '../models/build-model';
import { formatSummary, summarizeModel, type ModelSummary } from '../models/model-summary';
import { matchesPattern } from '../train/param-pattern';
import { frozenStagePatterns } from '../train/stage-plan';

export interface SummaryRequest {
  configFile?: string;
  overrides?: readonly string[];
  /** Default: data.train.crop_size. */
  inputSize?: [number, number];
  depth: number;
  log: (line: string) => void;
}

export async function summarizeConfig(req: SummaryRequest): Promise<ModelSummary> {
  const cfg = resolveConfig({ file: req.configFile, overrides: req.overrides });
  await loadBackend(cfg.backend);
  const model = buildModel(cfg.model, cfg.data.num_classes, cfg.seed, { initialize: false });
  try {
    const frozen = [
      ...frozenStagePatterns(model.backbone.stageModules, cfg.model.backbone.frozen_stages ?? -1),
      ...(cfg.schedule.stages?.[0]?.frozen ?? []),
    ];
    const summary = summarizeModel(model, {
      inputSize: req.inputSize ?? cfg.data.train.crop_size,
      isTrainable: (name) => !frozen.some((p) => matchesPattern(name, p)),
    });
    for (const line of formatSummary(summary, req.depth)) req.log(line);
    return summary;
  } finally {
    model.dispose();
  }
}
