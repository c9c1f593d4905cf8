import { Flags } from '@oclif/core';
import { BACKENDS } from '../config/config-schema';
import { BaseCommand, configFlags } from '../cli/base-command';
import { evaluateCheckpoint } from '../eval/eval-run';

export default class Eval extends BaseCommand {
  static override summary = 'Evaluate a checkpoint on a split: mIoU, mAcc, aAcc and a per-class table.';
  static override description =
    'Whole-image, single-scale evaluation at the labels\' resolution. The config comes from the checkpoint unless --config is given; trailing key.path=value arguments override it (e.g. data.root=... data.val_split=test).';
  static override examples = [
    '<%= config.bin %> eval --checkpoint work_dirs/default/checkpoints/best',
    '<%= config.bin %> eval --checkpoint work_dirs/default/checkpoints/best --json',
    '<%= config.bin %> eval --config configs/pspnet_r18_synthetic.yaml --checkpoint work_dirs/pspnet_r18_synthetic/checkpoints/best data.val_split=val',
  ];
  static override strict = false;
  static override flags = {
    ...configFlags,
    checkpoint: Flags.string({ summary: 'Checkpoint directory to evaluate.', required: true, helpValue: 'PATH' }),
    split: Flags.string({ summary: 'Split to evaluate (default: the config\'s data.val_split).' }),
    backend: Flags.string({ summary: 'Compute backend.', options: [...BACKENDS] }),
    json: Flags.boolean({ summary: 'Print the metrics as JSON (and nothing else).' }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(Eval);
    const overrides = [...(argv as string[]), ...(flags.backend ? [`backend=${flags.backend}`] : []), ...(flags.split ? [`data.val_split=${flags.split}`] : [])];
    const quiet = flags.json;
    const report = await evaluateCheckpoint({ checkpoint: flags.checkpoint, configFile: flags.config, overrides, log: quiet ? () => {} : (m) => this.log(m) });
    if (flags.json) this.log(JSON.stringify(report, null, 2));
  }
}
