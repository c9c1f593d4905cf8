/** A problem with a config file, key or override. Commands map it to exit code 2 (usage error). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}
