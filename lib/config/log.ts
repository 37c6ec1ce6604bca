/**
 * `log:`, defined and converted in one place: the level (distribution's logrus names, `warning`,
 * `fatal` and `panic` mapped onto ours), the formatter, fields added to every line, the access log.
 */
import { converted, ignored as I, key, map, section } from './key-def.js';

/** `log:` */
export interface LogConfig {
  readonly level: 'error' | 'warn' | 'info' | 'debug';
  readonly formatter: 'text' | 'json' | 'logstash';
  readonly fields: Readonly<Record<string, unknown>>;
  readonly accesslog: { readonly disabled: boolean };
}

/** logrus's levels this registry folds into its own. */
const LEVELS: Readonly<Record<string, LogConfig['level']>> = { warning: 'warn', fatal: 'error', panic: 'error' };

/** `log:` and its conversion. */
export const LOG_KEYS = converted(
  section(
    {
      level: key({ enum: ['error', 'warn', 'warning', 'info', 'debug', 'fatal', 'panic'], default: 'info' }),
      formatter: key({ enum: ['text', 'json', 'logstash'], default: 'text' }),
      fields: map({ type: 'object', default: {} }),
      accesslog: section({ disabled: key({ type: 'boolean', default: false }) }, { default: {} }),
      hooks: I,
      reportcaller: I,
    },
    { default: {} },
  ),
  (log): LogConfig => ({
    level: LEVELS[log.level] ?? log.level,
    formatter: log.formatter,
    fields: log.fields,
    accesslog: { disabled: log.accesslog.disabled },
  }),
);
