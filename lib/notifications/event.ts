/**
 * distribution's notification events (`notifications/event.go`, `bridge.go`): the envelope, one
 * event's fields and how each kind of event is filled. Field names and omissions as Go's JSON
 * encoding of those structs (`omitempty` on everything but `request.id`, `request.method`,
 * `request.useragent`).
 */
import { randomUUID } from 'node:crypto';
import { ENVELOPE_MEDIA_TYPES } from '../config/notifications.js';

/** The envelope's default `Content-Type`: distribution 2.8's (3.x sends the same fields as `...events.v2+json`; an endpoint's `mediatype` picks). */
export const EVENTS_MEDIA_TYPE = ENVELOPE_MEDIA_TYPES[0];

/** distribution's actions, and ours (`cached`: a fill of the cache; `evicted`: an expiry or an eviction). */
export type EventAction = 'pull' | 'push' | 'mount' | 'delete' | 'cached' | 'evicted';

/** A descriptor as `references` lists them. */
export interface EventDescriptor {
  readonly mediaType?: string;
  readonly size?: number;
  readonly digest?: string;
}

/** What an event is about. */
export interface EventTarget {
  mediaType?: string;
  size?: number;
  digest?: string;
  /** The same as `size` (kept by distribution for older consumers). */
  length?: number;
  repository?: string;
  /** A mount's source repository (distribution 3.x). */
  fromRepository?: string;
  url?: string;
  tag?: string;
  references?: EventDescriptor[];
}

/** The request that caused an event. */
export interface RequestRecord {
  readonly id: string;
  readonly addr?: string;
  readonly host?: string;
  readonly method: string;
  readonly useragent: string;
}

/** Who caused an event (the authenticated user, if any). */
export interface ActorRecord {
  readonly name?: string;
}

/** Which registry process generated an event: `hostname:port` and an id that changes at every start. */
export interface SourceRecord {
  readonly addr?: string;
  readonly instanceID?: string;
}

/** One event, as sent. */
export interface RegistryEvent {
  readonly id: string;
  readonly timestamp: string;
  readonly action: EventAction;
  readonly target: EventTarget;
  readonly request: RequestRecord;
  readonly actor: ActorRecord;
  readonly source: SourceRecord;
}

/** The body of a notification: `{"events": [...]}`. */
interface Envelope {
  readonly events: readonly RegistryEvent[];
}

/**
 * An event with its id and timestamp (Go's `time.Now()` in RFC 3339, here with milliseconds). Built
 * field by field, in the order of distribution's structs, so that a request building one pays a
 * few small objects and no reflection over their keys.
 */
export function createEvent(action: EventAction, target: EventTarget, request: RequestRecord, actor: ActorRecord, source: SourceRecord): RegistryEvent {
  return {
    id: randomUUID(),
    timestamp: new Date().toISOString(),
    action,
    target: compactTarget(target),
    request: compactRequest(request),
    actor: actor.name ? { name: actor.name } : {},
    source,
  };
}

/** The envelope's bytes, indented as distribution's `json.MarshalIndent(envelope, "", "   ")`. */
export function envelopeBody(events: readonly RegistryEvent[]): Buffer {
  return Buffer.from(JSON.stringify({ events } satisfies Envelope, null, 3));
}

/** Go's `omitempty` on the target: no empty strings, zero numbers or empty lists. */
function compactTarget(t: EventTarget): EventTarget {
  const out: EventTarget = {};
  if (t.mediaType) out.mediaType = t.mediaType;
  if (t.size) out.size = t.size;
  if (t.digest) out.digest = t.digest;
  if (t.length) out.length = t.length;
  if (t.repository) out.repository = t.repository;
  if (t.fromRepository) out.fromRepository = t.fromRepository;
  if (t.url) out.url = t.url;
  if (t.tag) out.tag = t.tag;
  if (t.references && t.references.length > 0) out.references = t.references;
  return out;
}

/** Go's `omitempty` on the request: `addr` and `host` only when set; `id`, `method` and `useragent` always. */
function compactRequest(r: RequestRecord): RequestRecord {
  // Keys in the order of distribution's RequestRecord, as its JSON has them.
  const out: { id: string; addr?: string; host?: string; method?: string; useragent?: string } = { id: r.id ?? '' };
  if (r.addr) out.addr = r.addr;
  if (r.host) out.host = r.host;
  out.method = r.method ?? '';
  out.useragent = r.useragent ?? '';
  return out as RequestRecord;
}
