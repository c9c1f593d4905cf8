import { Args, Flags } from '@oclif/core';
import { BaseCommand, configFlags } from '../../cli/base-command';
import { SCHEME_CHOICES } from '../../weights/key-schemes';
import { importWeights } from '../../weights/import-weights';

export default class WeightsImport extends BaseCommand {
  static override summary = 'Convert a PyTorch state_dict (saved as safetensors) into segdist weights for the configured model.';
  static override description =
    'Strips module. (DataParallel) and state_dict. prefixes, maps the keys through a scheme (mmseg, torchvision, semseg, pyconvsegnet; auto picks ' +
    'the one under which most tensors match), converts conv weights from OIHW to HWIO, and compares every tensor with the model built ' +
    'from the config. It prints what load_state_dict(strict=False) would: matched, missing, unexpected and shape-mismatched keys ' +
    '(BN num_batches_tracked counters are dropped and counted). The output holds the matched tensors in the format of a checkpoint\'s ' +
    'model.safetensors; start training from it with model.pretrained=FILE, where the missing tensors keep their seeded initialisation. ' +
    'With --strict (or model.pretrained_strict) any missing, unexpected or mismatched key is an error naming the keys (exit 2). ' +
    'A .pth converts to safetensors with tools/pth_to_safetensors.py (python3 + torch); see docs/weights.md. ' +
    'Trailing key.path=value arguments override config keys.';
  static override examples = [
    '<%= config.bin %> weights import resnet50.safetensors --config configs/pspnet_r50_camvid.yaml --out work_dirs/resnet50_v1b.safetensors',
    '<%= config.bin %> weights import train_epoch_100.safetensors --config configs/pspnet_r50_camvid.yaml --scheme semseg --out pspnet50.safetensors model.backbone.stem=v1c model.backbone.stem_channels=128 data.num_classes=21',
    '<%= config.bin %> weights import pspnet_r50.safetensors --config configs/pspnet_r50_camvid.yaml --out pspnet_r50.safetensors --strict',
  ];
  static override strict = false;
  static override args = {
    input: Args.string({ description: 'PyTorch state_dict as safetensors (tools/pth_to_safetensors.py makes one from a .pth).', required: true }),
  };
  static override flags = {
    ...configFlags,
    out: Flags.string({ char: 'o', summary: 'Output file (segdist model weights, safetensors).', required: true, helpValue: 'FILE' }),
    scheme: Flags.string({ summary: 'Key scheme of the input (default: the config\'s model.pretrained_scheme, auto unless set).', options: [...SCHEME_CHOICES] }),
    strict: Flags.boolean({ summary: 'Fail (exit 2) unless every tensor matches: no missing, unexpected or shape-mismatched keys.' }),
  };

  async run(): Promise<void> {
    const { args, flags, argv } = await this.parse(WeightsImport);
    await importWeights({
      input: args.input, out: flags.out, configFile: flags.config, overrides: (argv as string[]).slice(1),
      scheme: flags.scheme, strict: flags.strict, log: (m) => this.log(m),
    });
  }
}
