/**
 * The registry's events, fanned out to every configured endpoint (distribution's `Broadcaster` and
 * `bridge`): the request-side events (`pull`, `push`, `mount`, `delete`, filled as distribution's
 * bridge fills them) and ours (`cached`, `evicted`), each stamped with this process's source record.
 * Emitting costs a request a check per endpoint and, if one has room, one small event and a push
 * on its queue; while every queue is full nothing is built. Nothing waits on an endpoint.
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
interface ManifestSubject {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly payload: Buffer;
}

/** distribution's media type of a blob in events (its blob descriptors'). */
const BLOB_MEDIA_TYPE = 'application/octet-stream';

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

  /** A manifest pulled or pushed (`tag` when the client named one). `origin` is asked for only if an endpoint takes the event. */
  manifest(action: 'pull' | 'push', origin: () => EventOrigin, repo: string, m: ManifestSubject, tag?: string): void {
    const to = this.takers(action, m.mediaType);
    if (!to) return;
    const o = origin();
    const target: EventTarget = {
      mediaType: m.mediaType,
      size: m.payload.length,
      digest: m.digest.value,
      length: m.payload.length,
      repository: repo,
      url: `${o.base}/v2/${repo}/manifests/${m.digest.value}`,
      tag,
    };
    if (this.includeReferences) target.references = referencesOf(m.payload);
    this.send(to, action, target, o);
  }

  /** A blob pulled, pushed or mounted (from `fromRepository`). Its media type, as distribution's blob descriptors: `application/octet-stream`. */
  blob(action: 'pull' | 'push' | 'mount', origin: () => EventOrigin, repo: string, digest: Digest, size: number, fromRepository?: string): void {
    const to = this.takers(action, BLOB_MEDIA_TYPE);
    if (!to) return;
    const o = origin();
    this.send(
      to,
      action,
      {
        mediaType: BLOB_MEDIA_TYPE,
        size,
        digest: digest.value,
        length: size,
        repository: repo,
        fromRepository,
        url: `${o.base}/v2/${repo}/blobs/${digest.value}`,
      },
      o,
    );
  }

  /** A manifest or blob deleted by digest, or a tag deleted: distribution sends the digest or the tag only. */
  deleted(origin: () => EventOrigin, repo: string, what: { digest: Digest } | { tag: string }): void {
    const to = this.takers('delete', undefined);
    if (!to) return;
    this.send(to, 'delete', 'digest' in what ? { digest: what.digest.value, repository: repo } : { repository: repo, tag: what.tag }, origin());
  }

  /** Ours: content committed to the cache (`cached`) or removed from it by expiry or the size cap (`evicted`). No request caused it. */
  cache(action: 'cached' | 'evicted', type: 'blob' | 'manifest', repo: string, digest: Digest, size: number | undefined, mediaType?: string): void {
    const media = mediaType ?? (type === 'blob' ? BLOB_MEDIA_TYPE : undefined);
    const to = this.takers(action, media);
    if (!to) return;
    const target: EventTarget = { mediaType: media, size, digest: digest.value, length: size, repository: repo };
    this.send(to, action, target, { request: { id: '', method: '', useragent: '' }, actor: {}, base: '' });
  }

  /** Stops the endpoints, giving them a moment to deliver what is queued. */
  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.close(CLOSE_GRACE_MS)));
  }

  /**
   * The endpoints that take an event of `action` on `mediaType` now, or undefined if none does:
   * asked before the event is built, so that while every endpoint's queue is full (an endpoint
   * down under load) a request builds nothing and each endpoint just counts a drop.
   */
  private takers(action: EventAction, mediaType: string | undefined): Endpoint[] | undefined {
    let to: Endpoint[] | undefined;
    for (const e of this.endpoints) if (e.admits(action, mediaType)) (to ??= []).push(e);
    return to;
  }

  private send(to: readonly Endpoint[], action: EventAction, target: EventTarget, origin: EventOrigin): void {
    const event = createEvent(action, target, origin.request, origin.actor, this.source);
    for (const e of to) e.enqueue(event);
  }
}

/** distribution's `Manifest.References()`: an image's config and layers, an index's manifests. */
function referencesOf(payload: Buffer): EventDescriptor[] | undefined {
  const parsed = tryParseManifest(payload);
  if (!parsed) return undefined;
  const { subject } = parsed.refs;
  return references(parsed)
    .filter((d) => d !== subject)
    .map((d) => ({
      mediaType: d.mediaType,
      digest: d.digest.value,
      size: d.size,
      ...(d.urls ? { urls: d.urls } : {}),
      ...(d.platform ? { platform: d.platform } : {}),
    }));
}
