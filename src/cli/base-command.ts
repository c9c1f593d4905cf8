// Shared by every command: the config flags, and one place that turns errors into messages and exit
// codes (1 runtime failure, 2 bad config or usage, 3 bad data), so commands stay a few lines long.
import { Command, Errors, Flags } from '@oclif/core';
import { ConfigError } from '../config/config-error';
import { DataError } from '../data/data-error';

export const EXIT = { failure: 1, config: 2, data: 3, interrupted: 130 } as const;

export abstract class BaseCommand extends Command {
  protected override async catch(err: Error & { exitCode?: number }): Promise<unknown> {
    // oclif's own parse errors and this.error()/this.exit() already carry their exit codes.
    if (err instanceof Errors.CLIError || (err as { oclif?: unknown }).oclif !== undefined) return super.catch(err);
    if (process.env.SEGDIST_DEBUG) process.stderr.write(`${err.stack}\n`);
    const exit = err instanceof ConfigError ? EXIT.config : err instanceof DataError ? EXIT.data : EXIT.failure;
    // Printed as is rather than through this.error(), which wraps at the terminal width and would
    // split the file or key at fault across lines.
    process.stderr.write(`Error: ${err.message}\n`);
    return this.exit(exit);
  }
}

/** --config plus trailing key.path=value overrides, for the commands that resolve a config. */
export const configFlags = {
  config: Flags.string({
    char: 'c',
    summary: 'YAML config file (defaults < file < overrides).',
    description: 'Without --config the embedded default is used: a small PSPNet-ResNet-18 on a synthetic dataset, on CPU.',
    helpValue: 'FILE',
  }),
};
