/**
 * One notification endpoint (distribution's `notifications/endpoint.go` pipeline: ignore filter ->
 * queue -> retrying sink -> HTTP sink), with one difference: the queue is bounded. Events are
 * posted one per envelope, in order, by one worker; a failed post is retried at once until
 * `threshold` consecutive failures, then once every `backoff` (distribution's `retryingSink`), for
 * as long as it takes. Writing never waits: an event that finds the queue full (`queuelimit`) is
 * dropped and reported, so an endpoint that is down or slow costs the requests nothing and memory
 * stays bounded.
 */
import http from 'node:http';
import https from 'node:https';
import type { NotificationEndpointConfig } from '../config/notifications.js';
import { envelopeBody, type EventAction, type RegistryEvent } from './event.js';

/** Why events were dropped: the queue was full, or the registry stopped before they could be sent. */
export type DropReason = 'queue_full' | 'shutdown';

/** What an endpoint reports (metrics, logs). */
export interface EndpointListener {
  /** An event entered the queue. */
  queued?(endpoint: string): void;
  /** An event left the queue (delivered, or dropped at shutdown). */
  dequeued?(endpoint: string): void;
  /** A post was answered 2xx or 3xx. */
  delivered?(endpoint: string, status: number): void;
  /** A post was answered with another status (it is retried). */
  rejected?(endpoint: string, status: number): void;
  /** A post failed without an answer (it is retried). */
  failed?(endpoint: string, err: Error): void;
  /** `count` events were dropped. */
  dropped?(endpoint: string, reason: DropReason, count: number): void;
  /** The endpoint failed `threshold` times in a row and now retries every `backoff`. */
  backingOff?(endpoint: string, failures: number, err: Error): void;
}

/** A bounded, retrying, queued sink of events for one URL. */
export class Endpoint {
  readonly name: string;
  private readonly queue: RegistryEvent[] = [];
  private head = 0;
  private running = false;
  private closed = false;
  private readonly agent: http.Agent;
  private readonly ignoredMediaTypes: ReadonlySet<string>;
  private readonly ignoredActions: ReadonlySet<string>;
  private wake?: () => void;
  private inflight?: http.ClientRequest;
  private idle: Promise<void> = Promise.resolve();

  constructor(
    private readonly config: NotificationEndpointConfig,
    private readonly listener: EndpointListener = {},
  ) {
    this.name = config.name;
    this.ignoredMediaTypes = new Set(config.ignoredmediatypes);
    this.ignoredActions = new Set(config.ignoredactions);
    const options = { keepAlive: true, maxSockets: 1 };
    this.agent = config.url.startsWith('https:') ? new https.Agent(options) : new http.Agent(options);
  }

  /** Events waiting (the one being sent included). */
  get pending(): number {
    return this.queue.length - this.head;
  }

  /** True when this endpoint takes events of `action` on `mediaType` (distribution's `ignoredSink`, and our extra actions only when included). */
  accepts(action: EventAction, mediaType: string | undefined): boolean {
    if (mediaType !== undefined && this.ignoredMediaTypes.has(mediaType)) return false;
    if (this.ignoredActions.has(action)) return false;
    if (action === 'cached' || action === 'evicted') return this.config.includedactions.includes(action);
    return true;
  }

  /**
   * True when an event of `action` on `mediaType` would be queued now: not ignored, and room in
   * the queue. A full queue counts the event as dropped here, so the caller need not build it.
   */
  admits(action: EventAction, mediaType: string | undefined): boolean {
    if (this.closed || !this.accepts(action, mediaType)) return false;
    if (this.pending >= this.config.queuelimit) {
      this.listener.dropped?.(this.name, 'queue_full', 1);
      return false;
    }
    return true;
  }

  /** Queues `event`, which `admits` let through just before; never waits. */
  enqueue(event: RegistryEvent): void {
    this.queue.push(event);
    this.listener.queued?.(this.name);
    if (!this.running) this.start();
  }

  /** Queues `event` unless ignored; never waits. A full queue drops it. */
  write(event: RegistryEvent): void {
    if (this.admits(event.action, event.target.mediaType)) this.enqueue(event);
  }

  /**
   * Stops taking events, gives the queued ones up to `graceMs` to be delivered, then abandons the
   * rest (reported as dropped at shutdown).
   */
  async close(graceMs: number): Promise<void> {
    if (this.closed) return this.idle;
    this.closed = true;
    this.wake?.();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
      timer.unref();
    });
    await Promise.race([this.idle, deadline]);
    clearTimeout(timer);
    const left = this.pending;
    this.queue.length = 0;
    this.head = 0;
    this.inflight?.destroy(new Error('the registry is stopping'));
    await this.idle;
    for (let i = 0; i < left; i++) this.listener.dequeued?.(this.name);
    if (left > 0) this.listener.dropped?.(this.name, 'shutdown', left);
    this.agent.destroy();
  }

  private start(): void {
    this.running = true;
    this.idle = this.deliverQueued().finally(() => {
      this.running = false;
    });
  }

  /** The one worker: posts the oldest event until it is delivered, then the next. */
  private async deliverQueued(): Promise<void> {
    let failures = 0;
    while (this.pending > 0) {
      const event = this.queue[this.head]!;
      let failure: Error | undefined;
      try {
        const status = await this.postEnvelope(event);
        if (status >= 200 && status < 400) this.listener.delivered?.(this.name, status);
        else {
          this.listener.rejected?.(this.name, status);
          failure = new Error(`${this.config.url} answered ${status}`);
        }
      } catch (err) {
        failure = err as Error;
        if (!this.closed) this.listener.failed?.(this.name, failure);
      }
      // Cleared by close(): the event is accounted for there.
      if (this.pending === 0) return;
      if (!failure) {
        failures = 0;
        this.queue[this.head++] = undefined as unknown as RegistryEvent;
        this.listener.dequeued?.(this.name);
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue.splice(0, this.head);
          this.head = 0;
        }
        continue;
      }
      if (this.closed) return;
      failures++;
      if (failures >= this.config.threshold) {
        if (failures === this.config.threshold) this.listener.backingOff?.(this.name, failures, failure);
        await this.sleep(this.config.backoffms);
        if (this.closed) return;
      }
    }
  }

  /** Waits `ms`, or less if the endpoint is closed meanwhile. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  /** One post of one event; resolves with the status once the answer's body is read, within `timeout`. */
  private postEnvelope(event: RegistryEvent): Promise<number> {
    const body = envelopeBody([event]);
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(this.config.headers)) headers[k] = v.length === 1 ? v[0] : [...v];
    headers['content-type'] = this.config.mediatype;
    headers['content-length'] = body.length;
    const client = this.config.url.startsWith('https:') ? https : http;
    return new Promise<number>((resolve, reject) => {
      const req = client.request(this.config.url, { method: 'POST', headers, agent: this.agent });
      this.inflight = req;
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${this.config.timeoutms} ms`)), this.config.timeoutms);
      const settle = (): void => {
        clearTimeout(timer);
        this.inflight = undefined;
      };
      req.once('error', (err) => {
        settle();
        reject(err);
      });
      req.once('response', (res) => {
        res.resume();
        res.once('end', () => {
          settle();
          resolve(res.statusCode ?? 0);
        });
        res.once('error', (err) => {
          settle();
          reject(err);
        });
      });
      req.end(body);
    });
  }
}
