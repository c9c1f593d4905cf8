import { Flags } from '@oclif/core';
import { BACKENDS } from '../config/config-schema';
import { resolveConfig } from '../config/load-config';
import { BaseCommand, configFlags, EXIT } from '../cli/base-command';
import { launch } from '../cluster/launcher';
import { gpuBackendInstalled } from '../backend/load-backend';
import { train, TrainingInterrupted } from '../train/train-run';

export default class Train extends BaseCommand {
  static override summary = 'Train a segmentation model, in this process or with one trainer per GPU.';
  static override description =
    'Without --config it trains the embedded default: a small PSPNet-ResNet-18 on a synthetic dataset that is generated on first use, on the CPU. ' +
    'Trailing key.path=value arguments override config keys. SIGINT/SIGTERM stop after the current step and save a checkpoint (checkpoint.save_on_interrupt).\n\n' +
    'With --gpus N it starts N trainer processes on this host (one per GPU; N CPU trainers where no GPU backend loads) that average gradients ' +
    'over a ZeroMQ ring allreduce, and supervises them. On several hosts, run one launcher per host with the same --nnodes, --master-addr, ' +
    '--master-port and --job-token and each its own --node-rank. A trainer started by hand with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, ' +
    'MASTER_PORT and SEGDIST_JOB_TOKEN joins the same way.';
  static override examples = [
    '<%= config.bin %> train',
    '<%= config.bin %> train --config configs/pspnet_r18_synthetic.yaml train.epochs=4 optimizer.lr=0.02',
    '<%= config.bin %> train --config configs/pspnet_r18_synthetic.yaml --resume auto',
    '<%= config.bin %> train --config configs/pspnet_r50_camvid.yaml --gpus 4 model.norm=syncbn',
    '<%= config.bin %> train --config configs/pspnet_r50_camvid.yaml --gpus 2 --max-restarts 3',
    '<%= config.bin %> train --config configs/pspnet_r50_camvid.yaml --gpus 8 --nnodes 2 --node-rank 0 --master-addr 10.1.2.3 --master-port 29500 --job-token s3cret',
  ];
  static override strict = false;
  static override flags = {
    ...configFlags,
    resume: Flags.string({ summary: 'Continue from a checkpoint directory, or "auto" for the latest complete one in the work dir.', helpValue: 'PATH|auto' }),
    backend: Flags.string({ summary: 'Compute backend (overrides the config\'s backend key).', options: [...BACKENDS] }),
    gpus: Flags.integer({ summary: 'Trainer processes to start on this host, one per GPU (CPU trainers where no GPU backend loads).', min: 1 }),
    nnodes: Flags.integer({ summary: 'Hosts in the job (one launcher per host).', default: 1, min: 1 }),
    'node-rank': Flags.integer({ summary: 'This host\'s index among the --nnodes hosts.', default: 0, min: 0 }),
    'master-addr': Flags.string({ summary: 'Address of the host of rank 0, where the rendezvous runs.', default: '127.0.0.1' }),
    'master-port': Flags.integer({ summary: 'Rendezvous port on --master-addr (default: a free port, single host only).', min: 1, max: 65535 }),
    'job-token': Flags.string({ summary: 'Shared secret of a multi-host job: trainers presenting another are refused (default: $SEGDIST_JOB_TOKEN; generated for a single host).' }),
    'max-restarts': Flags.integer({ summary: 'When a trainer fails, restart all of them from the latest complete checkpoint up to this many times.', default: 0, min: 0 }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(Train);
    const overrides = [...(argv as string[]), ...(flags.backend ? [`backend=${flags.backend}`] : [])];
    const cfg = resolveConfig({ file: flags.config, overrides });

    if (flags.gpus !== undefined || flags.nnodes > 1) {
      if (flags['node-rank'] >= flags.nnodes) this.error(`--node-rank ${flags['node-rank']} must be below --nnodes ${flags.nnodes}`, { exit: EXIT.config });
      if (flags.nnodes > 1 && !flags['master-port']) this.error('--master-port is required with --nnodes > 1 (every host must use the same one)', { exit: EXIT.config });
      const trainerArgs = [process.argv[1], 'train', ...(flags.config ? ['--config', flags.config] : []), ...(flags.resume ? ['--resume', flags.resume] : []), ...overrides];
      const code = await launch({
        nprocPerNode: flags.gpus ?? 1, nnodes: flags.nnodes, nodeRank: flags['node-rank'], masterAddr: flags['master-addr'], masterPort: flags['master-port'] ?? 0,
        jobToken: flags['job-token'] ?? process.env.SEGDIST_JOB_TOKEN, maxRestarts: flags['max-restarts'],
        trainerArgs, restartArgs: flags.resume ? [] : ['--resume', 'auto'], gpuBackend: gpuBackendInstalled(), log: (m) => process.stderr.write(`segdist launcher: ${m}\n`),
      });
      if (code !== 0) this.exit(code);
      return;
    }

    // A trainer started by our launcher exits when the launcher goes away, so none is ever orphaned.
    if (process.send) {
      process.on('disconnect', () => process.exit(EXIT.failure));
      process.channel?.unref();
    }
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
