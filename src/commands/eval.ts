import { Flags } from '@oclif/core';
import { BACKENDS, TEST_MODES } from '../config/config-schema';
import { BaseCommand, configFlags } from '../cli/base-command';
import { gpuBackendInstalled } from '../backend/load-backend';
import { launch } from '../cluster/launcher';
import { readDistEnv } from '../cluster/dist-env';
import { checkEvalSettings, evaluateCheckpoint } from '../eval/eval-run';
import { createProgress } from '../eval/progress';

export default class Eval extends BaseCommand {
  static override summary = 'Evaluate a checkpoint on a split: mIoU, mAcc, aAcc and a per-class table (IoU, accuracy).';
  static override description =
    'Every image is scored at its original label resolution. The test-time mode comes from the config\'s test section: ' +
    'whole (one pass), slide (windows of test.crop_size every test.stride, overlapping logits averaged) or multiscale ' +
    '(the image at each of test.scales, softmax probabilities resized back and averaged), each optionally with a horizontal flip. ' +
    'The config comes from the checkpoint unless --config is given; trailing key.path=value arguments override it ' +
    '(e.g. data.root=... test.scales=[0.75,1.0,1.25]). A progress bar goes to stderr when it is a terminal.\n\n' +
    'With --gpus N it starts N processes on this host (one per GPU; CPU processes where no GPU backend loads), each scoring every N-th image; ' +
    'their confusion matrices are summed exactly, so the metrics are those of one process.';
  static override examples = [
    '<%= config.bin %> eval --checkpoint work_dirs/default/checkpoints/best',
    '<%= config.bin %> eval --checkpoint work_dirs/default/checkpoints/best --json',
    '<%= config.bin %> eval --checkpoint work_dirs/pspnet_r18_camvid/checkpoints/best --mode slide test.crop_size=[192,192]',
    '<%= config.bin %> eval --checkpoint work_dirs/pspnet_r18_camvid/checkpoints/best --mode multiscale --flip test.scales=[0.5,0.75,1.0,1.25,1.5,1.75]',
    '<%= config.bin %> eval --checkpoint work_dirs/pspnet_r50_camvid/checkpoints/best --gpus 4 --mode multiscale --flip',
    '<%= config.bin %> eval --config configs/pspnet_r18_synthetic.yaml --checkpoint work_dirs/pspnet_r18_synthetic/checkpoints/best data.val_split=val',
  ];
  static override strict = false;
  static override flags = {
    ...configFlags,
    checkpoint: Flags.string({ summary: 'Checkpoint directory to evaluate.', required: true, helpValue: 'PATH' }),
    split: Flags.string({ summary: 'Split to evaluate (default: the config\'s data.val_split).' }),
    mode: Flags.string({ summary: 'Test-time mode (sets test.mode; default: the config\'s, whole unless set).', options: [...TEST_MODES] }),
    flip: Flags.boolean({ summary: 'Also predict the mirrored image and average (sets test.flip).', allowNo: true }),
    backend: Flags.string({ summary: 'Compute backend.', options: [...BACKENDS] }),
    json: Flags.boolean({ summary: 'Print the metrics as JSON (and nothing else on stdout).' }),
    gpus: Flags.integer({ summary: 'Evaluation processes to start on this host, one per GPU (CPU processes where no GPU backend loads); same metrics as one.', min: 1 }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(Eval);
    const overrides = [
      ...(argv as string[]),
      ...(flags.backend ? [`backend=${flags.backend}`] : []),
      ...(flags.split ? [`data.val_split=${flags.split}`] : []),
      ...(flags.mode ? [`test.mode=${flags.mode}`] : []),
      ...(flags.flip === undefined ? [] : [`test.flip=${flags.flip}`]),
    ];
    if (flags.gpus !== undefined && flags.gpus > 1) {
      // Settings are checked here, so a mistake is one config error rather than N failed processes.
      checkEvalSettings({ checkpoint: flags.checkpoint, configFile: flags.config, overrides });
      const rankArgs = [process.argv[1], 'eval', '--checkpoint', flags.checkpoint, ...(flags.config ? ['--config', flags.config] : []), ...(flags.json ? ['--json'] : []), ...overrides];
      const code = await launch({
        nprocPerNode: flags.gpus, nnodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', masterPort: 0, maxRestarts: 0,
        trainerArgs: rankArgs, restartArgs: [], gpuBackend: gpuBackendInstalled(), log: (m) => process.stderr.write(`segdist launcher: ${m}\n`),
      });
      if (code !== 0) this.exit(code);
      return;
    }
    // A rank started by the launcher exits when the launcher goes away, so none is ever orphaned.
    if (process.send) {
      process.on('disconnect', () => process.exit(1));
      process.channel?.unref();
    }
    const lead = readDistEnv().rank === 0;
    const log = flags.json ? () => {} : (m: string) => this.log(m);
    const report = await evaluateCheckpoint({
      checkpoint: flags.checkpoint, configFile: flags.config, overrides, log,
      progress: (total, label) => createProgress({ total, label, unit: 'images', plain: flags.json ? undefined : log }),
    });
    if (flags.json && lead) this.log(JSON.stringify(report, null, 2));
  }
}
