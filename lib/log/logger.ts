/**
 * Logging with winston, honouring `log.level`, `log.formatter` (`text` in distribution's logrus
 * style `time="..." level=info msg="..." key=value`, `json`, `logstash`) and `log.fields`.
 */
import { Writable } from 'node:stream';
import winston, { type Logger } from 'winston';
import type { LogConfig } from '../config/types.js';

/** winston's level names as distribution (logrus) prints them. */
const LEVEL_NAMES: Record<string, string> = { error: 'error', warn: 'warning', info: 'info', debug: 'debug' };

/** Quotes a logrus text value when it needs it. */
function textValue(value: unknown): string {
  const s = typeof value === 'string' ? value : value instanceof Error ? value.message : (JSON.stringify(value) ?? String(value));
  return /^[A-Za-z0-9_.:/@+\-[\]]+$/.test(s) ? s : JSON.stringify(s);
}

const RESERVED = new Set(['level', 'message', 'timestamp', 'time']);

function fieldsOf(info: winston.Logform.TransformableInfo): Array<[string, unknown]> {
  return Object.entries(info).filter(([k, v]) => !RESERVED.has(k) && typeof k === 'string' && v !== undefined);
}

const formats = {
  text: winston.format.printf((info) => {
    const parts = [
      `time=${JSON.stringify(String(info.timestamp))}`,
      `level=${LEVEL_NAMES[info.level] ?? info.level}`,
      `msg=${JSON.stringify(String(info.message))}`,
    ];
    for (const [k, v] of fieldsOf(info).sort(([a], [b]) => a.localeCompare(b))) parts.push(`${k}=${textValue(v)}`);
    return parts.join(' ');
  }),
  json: winston.format.printf((info) =>
    JSON.stringify({ time: info.timestamp, level: LEVEL_NAMES[info.level] ?? info.level, msg: info.message, ...Object.fromEntries(fieldsOf(info)) }),
  ),
  logstash: winston.format.printf((info) =>
    JSON.stringify({
      '@timestamp': info.timestamp,
      '@version': 1,
      level: LEVEL_NAMES[info.level] ?? info.level,
      message: info.message,
      ...Object.fromEntries(fieldsOf(info)),
    }),
  ),
};

/** A logger writing one line per entry to `stream` (default: stdout, as distribution). */
export function createLogger(log: LogConfig, stream: NodeJS.WritableStream = process.stdout): Logger {
  return winston.createLogger({
    level: log.level,
    levels: { error: 0, warn: 1, info: 2, debug: 3 },
    defaultMeta: { ...log.fields },
    format: winston.format.combine(winston.format.timestamp(), formats[log.formatter]),
    transports: [new winston.transports.Stream({ stream: stream as Writable })],
  });
}
