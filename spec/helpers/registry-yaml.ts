/**
 * The `config.yml` that tests and the bench give a registry (ours or Debian's docker-registry):
 * filesystem storage with deletes enabled, the access log off, and the sections' lines as given.
 */

/** Lines of a configuration; each section's lines are indented under it. */
export interface RegistryYaml {
  readonly root: string;
  /** Lines of a storage driver under `storage:` (indented for it) instead of `filesystem` at `root`. */
  readonly storage?: readonly string[];
  /** `log.level` (default `warn`). */
  readonly level?: string;
  /** Lines under `http:` (`addr: 127.0.0.1:5000`, ...). */
  readonly http: readonly string[];
  /** Lines under `proxy:` (`remoteurl: ...`, ...); no section without them. */
  readonly proxy?: readonly string[];
  /** More top-level YAML, as it is. */
  readonly extra?: readonly string[];
}

/** The configuration text. */
export function registryYaml(o: RegistryYaml): string {
  const indent = (lines: readonly string[]): string[] => lines.map((l) => `  ${l}`);
  return [
    'version: 0.1',
    'log:',
    `  level: ${o.level ?? 'warn'}`,
    '  accesslog:',
    '    disabled: true',
    'storage:',
    ...(o.storage ?? ['  filesystem:', `    rootdirectory: ${o.root}`]),
    '  delete:',
    '    enabled: true',
    'http:',
    ...indent(o.http),
    ...(o.proxy && o.proxy.length > 0 ? ['proxy:', ...indent(o.proxy)] : []),
    ...(o.extra ?? []),
    '',
  ].join('\n');
}
