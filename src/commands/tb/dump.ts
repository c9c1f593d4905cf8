import { Args } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command';
import { dumpEventDir } from '../../tensorboard/read-events';

export default class TbDump extends BaseCommand {
  static override summary = 'Print the records of TensorBoard event files: step, wall time, tag, value.';
  static override description = 'Reads every events.out.tfevents.* file under DIR (or one file), checking every CRC. A truncated last record (a run killed mid-write) is reported, not an error; a CRC mismatch exits 1.';
  static override examples = ['<%= config.bin %> tb dump work_dirs/default/tb', '<%= config.bin %> tb dump work_dirs/default/tb/2026-11-21T10-00-00-000Z/events.out.tfevents.1795305171.host.123.0'];
  static override args = { dir: Args.string({ description: 'Folder (searched recursively) or event file.', required: true }) };

  async run(): Promise<void> {
    const { args } = await this.parse(TbDump);
    const { lines, ok } = dumpEventDir(args.dir);
    for (const l of lines) this.log(l);
    if (!ok) this.exit(1);
  }
}
