import { Flags } from '@oclif/core';
import { BaseCommand, configFlags } from '../../cli/base-command';
import { configReference } from '../../config/config-reference';
import { configToYaml, resolveConfig } from '../../config/load-config';

export default class ConfigShow extends BaseCommand {
  static override summary = 'Print the resolved config (defaults < file < overrides) as YAML.';
  static override description = 'Overrides follow the flags as key.path=value; values are YAML scalars or flow lists.';
  static override examples = [
    '<%= config.bin %> config show',
    '<%= config.bin %> config show --config configs/pspnet_r18_synthetic.yaml optimizer.lr=0.02 data.train.crop_size=[96,96]',
    '<%= config.bin %> config show --reference',
  ];
  static override strict = false;
  static override flags = {
    ...configFlags,
    reference: Flags.boolean({ summary: 'Print the reference of every key (type, default, meaning) instead.' }),
    json: Flags.boolean({ summary: 'Print JSON instead of YAML.' }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(ConfigShow);
    if (flags.reference) {
      this.log(configReference());
      return;
    }
    const cfg = resolveConfig({ file: flags.config, overrides: argv as string[] });
    this.log(flags.json ? JSON.stringify(cfg, null, 2) : configToYaml(cfg).trimEnd());
  }
}
