/**
 * Tracing as distribution v3 does it (`tracing/tracing.go`): OpenTelemetry spans, configured by the
 * standard `OTEL_*` variables. This module is what the rest of lib/ calls; it has no dependency at
 * all, and does nothing (one function call, no allocation) until `startTracing` has loaded the
 * OpenTelemetry SDK (lib/tracing/otel.ts), which it does only when `OTEL_TRACES_EXPORTER` asks for
 * an exporter: a start without it never reads the SDK's modules (startup time).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Attribute values of a span. */
export type SpanAttributes = Record<string, string | number | boolean | undefined>;

/** A started span. */
export interface TraceSpan {
  setAttributes(attributes: SpanAttributes): void;
  /** Ends the span; with an error, marks it failed and records the error. */
  end(err?: unknown): void;
}

/** What the OpenTelemetry side implements (lib/tracing/otel.ts). */
export interface TracingBackend {
  /** Runs `fn` inside a new child span of the active one, ended when `fn` settles (when it fails only, if `open`). */
  inSpan<T>(name: string, attributes: SpanAttributes, fn: (span: TraceSpan) => Promise<T>, open?: boolean): Promise<T>;
  /** Adds the active context's W3C `traceparent` (and `tracestate`, baggage) to `headers`. */
  inject(headers: Record<string, string>): void;
  /** Runs `next` in a server span for an incoming request (its `traceparent` continued), ended with the response. */
  serve(req: IncomingMessage, res: ServerResponse, next: () => void): void;
  /** Exports what is pending and stops. */
  shutdown(): Promise<void>;
}

let backend: TracingBackend | undefined;

/** A span that is nothing. */
const NO_SPAN: TraceSpan = { setAttributes: () => undefined, end: () => undefined };

/** True once tracing was started. */
export function tracingEnabled(): boolean {
  return backend !== undefined;
}

/** Runs `fn` in a span named `name` (a child of the request's); just `fn()` when tracing is off. */
export function inSpan<T>(name: string, attributes: SpanAttributes, fn: (span: TraceSpan) => Promise<T>): Promise<T> {
  return backend ? backend.inSpan(name, attributes, fn) : fn(NO_SPAN);
}

/**
 * As `inSpan`, but the span stays open when `fn` succeeds, for the caller to end (a streamed upstream
 * body: the span lasts until its last byte). A failure of `fn` ends it.
 */
export function inOpenSpan<T>(name: string, attributes: SpanAttributes, fn: (span: TraceSpan) => Promise<T>): Promise<T> {
  return backend ? backend.inSpan(name, attributes, fn, true) : fn(NO_SPAN);
}

/** Adds the W3C trace context of the active span to outgoing `headers` (upstream requests). */
export function injectTraceContext(headers: Record<string, string>): void {
  backend?.inject(headers);
}

/** The middleware that makes a server span of every request; undefined when tracing is off. */
export function requestTracing(): ((req: IncomingMessage, res: ServerResponse, next: () => void) => void) | undefined {
  const b = backend;
  return b && ((req, res, next) => b.serve(req, res, next));
}

/** What the variables ask for: an exporter and its protocol, or nothing (tracing off). */
export interface TracingSettings {
  readonly exporter: 'otlp' | 'console';
  readonly protocol: 'http/protobuf' | 'http/json';
}

/**
 * Reads the OpenTelemetry variables. Off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`,
 * `console`; `none` or unset: off, as the `registry:3` image sets it), or when `OTEL_SDK_DISABLED`
 * is true. An exporter or a protocol this registry cannot honour (`grpc`, `zipkin`) is an error: a
 * deployment asking for traces must not silently get none.
 */
export function tracingSettings(env: NodeJS.ProcessEnv): TracingSettings | undefined {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return undefined;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '' && s !== 'none');
  if (exporters.length === 0) return undefined;
  if (exporters.length > 1 || (exporters[0] !== 'otlp' && exporters[0] !== 'console')) {
    throw new Error(`OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER}: this registry exports spans with one of otlp, console or none`);
  }
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf').trim();
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL=${protocol}: this registry exports OTLP over http/protobuf or http/json`);
  }
  return { exporter: exporters[0], protocol };
}

/**
 * Starts tracing when the variables ask for it, loading the OpenTelemetry SDK then (and only then).
 * Resolves with a function that flushes and stops it, or undefined when tracing stays off.
 */
export async function startTracing(env: NodeJS.ProcessEnv, version: string, onError: (message: string) => void): Promise<(() => Promise<void>) | undefined> {
  const settings = tracingSettings(env);
  if (!settings || backend) return undefined;
  const { openTelemetryBackend } = await import('./otel.js');
  const started = openTelemetryBackend(settings, version, onError);
  backend = started;
  return async () => {
    if (backend === started) backend = undefined;
    await started.shutdown();
  };
}
