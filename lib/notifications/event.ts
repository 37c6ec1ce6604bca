/**
 * distribution's notification events (`notifications/event.go`, `bridge.go`): the envelope, one
 * event's fields and how each kind of event is filled. Field names and omissions as Go's JSON
 * encoding of those structs (`omitempty` on everything but `request.id`, `request.method`,
 * `request.useragent`); 2.8's media type of the envelope.
 */
import { randomUUID } from 'node:crypto';

/** The envelope's `Content-Type` (distribution 2.8; 3.x sends the same fields as `...events.v2+json`). */
export const EVENTS_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json';

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
export interface Envelope {
  readonly events: readonly RegistryEvent[];
}

/** An event with its id and timestamp (Go's `time.Now()` in RFC 3339, here with milliseconds). */
export function createEvent(action: EventAction, target: EventTarget, request: RequestRecord, actor: ActorRecord, source: SourceRecord): RegistryEvent {
  return { id: randomUUID(), timestamp: new Date().toISOString(), action, target: withoutEmpty(target), request: withoutEmpty(request), actor: withoutEmpty(actor), source };
}

/** The envelope's bytes, indented as distribution's `json.MarshalIndent(envelope, "", "   ")`. */
export function envelopeBody(events: readonly RegistryEvent[]): Buffer {
  return Buffer.from(JSON.stringify({ events } satisfies Envelope, null, 3));
}

/** Go's `omitempty`: no empty strings, zero numbers or empty lists; `request.id`, `method` and `useragent` stay. */
function withoutEmpty<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const keep = k === 'id' || k === 'method' || k === 'useragent';
    if (!keep && (v === undefined || v === '' || v === 0 || (Array.isArray(v) && v.length === 0))) continue;
    out[k] = v ?? '';
  }
  return out as T;
}
