/**
 * What the endpoints report, turned into distribution's notification metrics and our log lines: a
 * failing endpoint is logged once when it starts backing off and once when it delivers again, and
 * dropped events at most once per endpoint every 10 seconds (with how many), so a dead endpoint
 * under load neither floods the log nor goes unnoticed.
 */
import { STATUS_CODES } from 'node:http';
import type { Logger } from 'winston';
import type { Metrics } from '../metrics/metrics.js';
import type { DropReason, EndpointListener } from './endpoint.js';

const DROP_LOG_INTERVAL_MS = 10_000;

/** The listener the endpoints of one registry report to. */
export function reportingListener(metrics: Metrics, logger: Logger): EndpointListener {
  const failing = new Set<string>();
  const drops = new Map<string, { logged: number; since: Record<DropReason, number> }>();
  const status = (endpoint: string, code: number): void => void metrics.notificationStatus.inc({ code: `${code} ${STATUS_CODES[code] ?? ''}`.trim(), endpoint });
  return {
    queued: (endpoint) => {
      metrics.notificationEvents.inc({ type: 'Events', endpoint });
      metrics.notificationPending.inc({ endpoint });
    },
    dequeued: (endpoint) => void metrics.notificationPending.dec({ endpoint }),
    delivered: (endpoint, code) => {
      status(endpoint, code);
      metrics.notificationEvents.inc({ type: 'Successes', endpoint });
      if (failing.delete(endpoint)) logger.info(`notifications: endpoint ${endpoint} accepts events again`);
    },
    rejected: (endpoint, code) => {
      status(endpoint, code);
      metrics.notificationEvents.inc({ type: 'Failures', endpoint });
      logger.debug(`notifications: endpoint ${endpoint} answered ${code}; retrying`);
    },
    failed: (endpoint, err) => {
      metrics.notificationEvents.inc({ type: 'Errors', endpoint });
      logger.debug(`notifications: endpoint ${endpoint}: ${err.message}; retrying`);
    },
    backingOff: (endpoint, failures, err) => {
      failing.add(endpoint);
      logger.warn(`notifications: endpoint ${endpoint} failed ${failures} times in a row (${err.message}): retrying every backoff, events queue up to its queuelimit`);
    },
    dropped: (endpoint, reason, count) => {
      metrics.notificationsDropped.inc({ endpoint, reason }, count);
      const d = drops.get(endpoint) ?? { logged: 0, since: { queue_full: 0, shutdown: 0 } };
      drops.set(endpoint, d);
      d.since[reason] += count;
      const now = Date.now();
      if (reason !== 'shutdown' && now - d.logged < DROP_LOG_INTERVAL_MS) return;
      d.logged = now;
      const what = (Object.entries(d.since) as [DropReason, number][]).filter(([, n]) => n > 0).map(([r, n]) => `${n} ${r === 'queue_full' ? 'with its queue full' : 'queued at shutdown'}`);
      d.since = { queue_full: 0, shutdown: 0 };
      logger.warn(`notifications: endpoint ${endpoint}: events dropped (${what.join(', ')}); see registry_notifications_dropped_total`);
    },
  };
}
