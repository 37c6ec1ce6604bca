/**
 * The OpenTelemetry side of tracing: the only module that imports the SDK, loaded by
 * `startTracing` (lib/tracing/tracing.ts) when `OTEL_TRACES_EXPORTER` asks for spans. As
 * distribution v3's `tracing.InitOpenTelemetry`: service `distribution` (or `OTEL_SERVICE_NAME`,
 * `OTEL_RESOURCE_ATTRIBUTES`), every span sampled, a batch span processor, W3C trace context and
 * baggage propagated. The exporter reads its own variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
 * `..._TRACES_ENDPOINT`, `..._HEADERS`, `..._TIMEOUT`), the batch processor `OTEL_BSP_*`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, propagation, trace, ROOT_CONTEXT, SpanKind, SpanStatusCode, type Span, type Tracer } from '@opentelemetry/api';
import { BatchSpanProcessor, ConsoleSpanExporter, NodeTracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter as OTLPJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import type { SpanAttributes, TraceSpan, TracingBackend, TracingSettings } from './tracing.js';

/** The service name distribution v3 reports (`tracing.serviceName`). */
const SERVICE_NAME = 'distribution';

/** Starts the SDK as `settings` say; `onError` gets the exporter's failures (the collector is down). */
export function openTelemetryBackend(settings: TracingSettings, version: string, onError: (message: string) => void): TracingBackend {
  const exporter: SpanExporter =
    settings.exporter === 'console' ? new ConsoleSpanExporter() : settings.protocol === 'http/json' ? new OTLPJsonExporter() : new OTLPProtobufExporter();
  const resource = defaultResource()
    .merge(resourceFromAttributes({ 'service.name': SERVICE_NAME, 'service.version': version }))
    .merge(detectResources({ detectors: [envDetector] }));
  const provider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(withErrors(exporter, onError))] });
  // The global context manager (AsyncLocalStorage: a span is active across awaits) and propagators.
  provider.register();
  const tracer = provider.getTracer('registry-mirror', version);
  return {
    inSpan: (name, attributes, fn, open) =>
      tracer.startActiveSpan(name, { attributes: defined(attributes) }, async (span) => {
        const handle = spanHandle(span);
        try {
          const result = await fn(handle);
          if (!open) handle.end();
          return result;
        } catch (err) {
          handle.end(err);
          throw err;
        }
      }),
    inject: (headers) => propagation.inject(context.active(), headers),
    serve: (req, res, next) => serve(tracer, req, res, next),
    shutdown: () => provider.shutdown(),
  };
}

/** A server span named as distribution's (`GET /v2/library/busybox/manifests/latest`), its caller's trace continued. */
function serve(tracer: Tracer, req: IncomingMessage, res: ServerResponse, next: () => void): void {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const parent = propagation.extract(ROOT_CONTEXT, req.headers);
  const span = tracer.startSpan(
    `${req.method} ${path}`,
    {
      kind: SpanKind.SERVER,
      attributes: defined({
        'http.request.method': req.method,
        'url.path': path,
        'user_agent.original': req.headers['user-agent'],
        'client.address': req.socket.remoteAddress,
        'server.address': req.headers.host,
      }),
    },
    parent,
  );
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    span.setAttribute('http.response.status_code', res.statusCode);
    if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    if (!res.writableFinished) span.setAttribute('registry.response.aborted', true);
    span.end();
  };
  res.once('finish', end);
  res.once('close', end);
  context.with(trace.setSpan(parent, span), next);
}

function spanHandle(span: Span): TraceSpan {
  return {
    setAttributes: (a) => span.setAttributes(defined(a)),
    end: (err) => {
      if (err !== undefined) {
        span.recordException(err instanceof Error ? err : String(err));
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      }
      span.end();
    },
  };
}

function defined(a: SpanAttributes): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(a)) if (v !== undefined) out[k] = v;
  return out;
}

/** The exporter, its failed exports reported (once per failure, not per span). */
function withErrors(exporter: SpanExporter, onError: (message: string) => void): SpanExporter {
  return {
    export: (spans, done) =>
      exporter.export(spans, (result) => {
        if (result.error) onError(`exporting ${spans.length} span(s) failed: ${result.error.message}`);
        done(result);
      }),
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}
