/**
 * The registry's events, fanned out to every configured endpoint (distribution's `Broadcaster` and
 * `bridge`): the request-side events (`pull`, `push`, `mount`, `delete`, filled as distribution's
 * bridge fills them) and ours (`cached`, `evicted`), each stamped with this process's source record.
 * Emitting costs a request one object and a push per endpoint queue; nothing waits on an endpoint.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { NotificationsConfig } from '../config/notifications.js';
import type { Digest } from '../distribution/digest.js';
import { references, tryParseManifest } from '../distribution/manifest.js';
import { createEvent, type ActorRecord, type EventAction, type EventDescriptor, type EventTarget, type RequestRecord, type SourceRecord } from './event.js';
import { Endpoint, type EndpointListener } from './endpoint.js';

/** The request an event comes from: its record, its user, and the registry's URL as the client reached it. */
export interface EventOrigin {
  readonly request: RequestRecord;
  readonly actor: ActorRecord;
  /** `http://host:port` and `http.prefix`, without the trailing slash (distribution's URL builder). */
  readonly base: string;
}

/** A manifest an event is about. */
export interface ManifestSubject {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly payload: Buffer;
}

/**
 * How long endpoints get at shutdown to deliver what is queued (they deliver all along, the drain
 * included): within the 800 ms a stop has after its drain (lib/cli.ts `SAVE_MS`), after the
 * schedule's write.
 */
const CLOSE_GRACE_MS = 500;

/** The configured endpoints and the events sent to them. */
export class Notifier {
  private readonly endpoints: Endpoint[];
  private readonly source: SourceRecord;
  private readonly includeReferences: boolean;

  /** `addr` is `http.addr` (its port goes into the source record, after this host's name, as distribution). */
  constructor(config: NotificationsConfig, addr: string, listener: EndpointListener = {}) {
    this.endpoints = config.endpoints.filter((e) => !e.disabled).map((e) => new Endpoint(e, listener));
    this.includeReferences = config.includereferences;
    const port = /:(\d+)$/.exec(addr)?.[1];
    this.source = { addr: port ? `${hostname()}:${port}` : hostname(), instanceID: randomUUID() };
  }

  /** True when at least one endpoint is enabled: without one, callers need not build events at all. */
  get active(): boolean {
    return this.endpoints.length > 0;
  }

  /** The names of the enabled endpoints. */
  get names(): string[] {
    return this.endpoints.map((e) => e.name);
  }

  /** Events queued per endpoint. */
  pending(): Record<string, number> {
    return Object.fromEntries(this.endpoints.map((e) => [e.name, e.pending]));
  }

  /** A manifest pulled or pushed (`tag` when the client named one). */
  manifest(action: 'pull' | 'push', origin: EventOrigin, repo: string, m: ManifestSubject, tag?: string): void {
    if (!this.active) return;
    const target: EventTarget = {
      mediaType: m.mediaType,
      size: m.payload.length,
      digest: m.digest.value,
      length: m.payload.length,
      repository: repo,
      url: `${origin.base}/v2/${repo}/manifests/${m.digest.value}`,
      tag,
    };
    if (this.includeReferences) target.references = referencesOf(m.payload);
    this.send(action, target, origin);
  }

  /** A blob pulled, pushed or mounted (from `fromRepository`). Its media type, as distribution's blob descriptors: `application/octet-stream`. */
  blob(action: 'pull' | 'push' | 'mount', origin: EventOrigin, repo: string, digest: Digest, size: number, fromRepository?: string): void {
    if (!this.active) return;
    this.send(
      action,
      { mediaType: 'application/octet-stream', size, digest: digest.value, length: size, repository: repo, fromRepository, url: `${origin.base}/v2/${repo}/blobs/${digest.value}` },
      origin,
    );
  }

  /** A manifest or blob deleted by digest, or a tag deleted: distribution sends the digest or the tag only. */
  deleted(origin: EventOrigin, repo: string, what: { digest: Digest } | { tag: string }): void {
    if (!this.active) return;
    this.send('delete', 'digest' in what ? { digest: what.digest.value, repository: repo } : { repository: repo, tag: what.tag }, origin);
  }

  /** Ours: content committed to the cache (`cached`) or removed from it by expiry or the size cap (`evicted`). No request caused it. */
  cache(action: 'cached' | 'evicted', type: 'blob' | 'manifest', repo: string, digest: Digest, size: number | undefined, mediaType?: string): void {
    if (!this.active) return;
    const target: EventTarget = { mediaType: mediaType ?? (type === 'blob' ? 'application/octet-stream' : undefined), size, digest: digest.value, length: size, repository: repo };
    this.send(action, target, { request: { id: '', method: '', useragent: '' }, actor: {}, base: '' });
  }

  /** Stops the endpoints, giving them a moment to deliver what is queued. */
  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.close(CLOSE_GRACE_MS)));
  }

  private send(action: EventAction, target: EventTarget, origin: EventOrigin): void {
    const event = createEvent(action, target, origin.request, origin.actor, this.source);
    for (const e of this.endpoints) e.write(event);
  }
}

/** distribution's `Manifest.References()`: an image's config and layers, an index's manifests. */
function referencesOf(payload: Buffer): EventDescriptor[] | undefined {
  const parsed = tryParseManifest(payload);
  if (!parsed) return undefined;
  const { subject } = parsed.refs;
  return references(parsed)
    .filter((d) => d !== subject)
    .map((d) => ({ mediaType: d.mediaType, digest: d.digest.value, size: d.size, ...(d.urls ? { urls: d.urls } : {}), ...(d.platform ? { platform: d.platform } : {}) }));
}
