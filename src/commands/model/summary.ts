import { Flags } from '@oclif/core';
import { BACKENDS } from '../../config/config-schema';
import { BaseCommand, configFlags } from '../../cli/base-command';
import { parseSize } from '../../cli/size-flag';
import { summarizeConfig } from '../../summary/config-summary';

export default class ModelSummary extends BaseCommand {
  static override summary = 'Print the configured model: per-module output shapes and parameter counts, and the totals.';
  static override description =
    'Builds the model of the config, runs one image of --input-size (default data.train.crop_size) through it in eval mode and ' +
    'prints, per module down to --depth, its name (the parameter-name prefix that optimizer.param_groups and schedule.stages[].frozen ' +
    'match), type, output shape (NHWC) and parameter count, then total, trainable and non-trainable parameters and buffer elements. ' +
    'Parameters frozen in the first training stage (schedule.stages[0].frozen, and model.backbone.frozen_stages) count as not trainable. The auxiliary head, which ' +
    'runs only in training, is run on the backbone\'s features to show its shape. Trailing key.path=value arguments override config keys.';
  static override examples = [
    '<%= config.bin %> model summary',
    '<%= config.bin %> model summary --config configs/pspnet_r50_camvid.yaml --input-size 512,512 --depth 2',
    '<%= config.bin %> model summary --config configs/pspnet_r18_synthetic_two_stage.yaml model.backbone.depth=34',
  ];
  static override strict = false;
  static override flags = {
    ...configFlags,
    'input-size': Flags.string({ summary: 'Input height and width, as H,W or HxW (one number: square). Default: data.train.crop_size.', helpValue: 'H,W' }),
    depth: Flags.integer({ summary: 'Module levels to list below the model (1: backbone and heads).', default: 3, min: 0 }),
    backend: Flags.string({ summary: 'Compute backend for the forward pass.', options: [...BACKENDS] }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(ModelSummary);
    await summarizeConfig({
      configFile: flags.config,
      overrides: [...(argv as string[]), ...(flags.backend ? [`backend=${flags.backend}`] : [])],
      inputSize: flags['input-size'] === undefined ? undefined : parseSize(flags['input-size'], '--input-size'),
      depth: flags.depth,
      log: (m) => this.log(m),
    });
  }
}
