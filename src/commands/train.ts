import { Flags } from '@oclif/core';
import { BACKENDS } from '../config/config-schema';
import { resolveConfig } from '../config/load-config';
import { BaseCommand, configFlags, EXIT } from '../cli/base-command';
import { train, TrainingInterrupted } from '../train/train-run';

export default class Train extends BaseCommand {
  static override summary = 'Train a segmentation model.';
  static override description =
    'Without --config it trains the embedded default: a small PSPNet-ResNet-18 on a synthetic dataset that is generated on first use, on the CPU. ' +
    'Trailing key.path=value arguments override config keys. SIGINT/SIGTERM stop after the current step and save a checkpoint (checkpoint.save_on_interrupt).';
  static override examples = [
    '<%= config.bin %> train',
    '<%= config.bin %> train --config configs/pspnet_r18_synthetic.yaml train.epochs=4 optimizer.lr=0.02',
    '<%= config.bin %> train --config configs/pspnet_r50_camvid.yaml --backend wasm',
    '<%= config.bin %> train --config configs/pspnet_r18_synthetic.yaml --resume auto',
  ];
  static override strict = false;
  static override flags = {
    ...configFlags,
    resume: Flags.string({ summary: 'Continue from a checkpoint directory, or "auto" for the latest complete one in the work dir.', helpValue: 'PATH|auto' }),
    backend: Flags.string({ summary: 'Compute backend (overrides the config\'s backend key).', options: [...BACKENDS] }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(Train);
    const overrides = [...(argv as string[]), ...(flags.backend ? [`backend=${flags.backend}`] : [])];
    const cfg = resolveConfig({ file: flags.config, overrides });
    const stop = new AbortController();
    const onSignal = (sig: NodeJS.Signals) => {
      if (stop.signal.aborted) process.exit(EXIT.interrupted); // a second signal: stop now
      process.stderr.write(`\n${sig}: stopping after the current step (again to stop at once)\n`);
      stop.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      await train(cfg, { resume: flags.resume, stopSignal: stop.signal });
    } catch (e) {
      if (e instanceof TrainingInterrupted) this.exit(EXIT.interrupted);
      throw e;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}
