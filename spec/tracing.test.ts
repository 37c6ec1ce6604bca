/**
 * Tracing through distribution v3's `OTEL_*` variables, on the built registry (`bin/registry`, the
 * bundle): spans received over OTLP/HTTP (JSON) by a receiver in the test, the caller's trace
 * continued and passed on to the upstream in `traceparent`; and a start without the variables
 * never resolves the OpenTelemetry SDK's modules (a loader hook records what is resolved).
 */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tracingSettings } from '../lib/tracing/tracing.js';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { freePort, waitForHttp } from './helpers/ports.js';
import { spawnChild } from './helpers/children.js';
import { stopProcess } from './helpers/stop-process.js';
import { until } from './helpers/until.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}

/** An OTLP/HTTP receiver of JSON exports. */
async function startReceiver(): Promise<{ url: string; spans: OtlpSpan[]; service: string[]; close(): Promise<void> }> {
  const spans: OtlpSpan[] = [];
  const service: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as any;
      for (const rs of body.resourceSpans ?? []) {
        for (const a of rs.resource?.attributes ?? []) if (a.key === 'service.name') service.push(a.value.stringValue);
        for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans as OtlpSpan[]));
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    service,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('tracing (OpenTelemetry)', () => {
  let dir: string;
  let upstream: FakeUpstream;
  let child: ChildProcess | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tracing-'));
    upstream = await startFakeUpstream();
    // Records every @opentelemetry specifier the process resolves.
    await writeFile(
      join(dir, 'hooks.mjs'),
      "import { appendFileSync } from 'node:fs';\nexport async function resolve(specifier, context, next) {\n  if (specifier.startsWith('@opentelemetry/')) appendFileSync(process.env.RESOLVE_LOG, specifier + '\\n');\n  return next(specifier, context);\n}\n",
    );
    await writeFile(join(dir, 'register.mjs'), "import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n");
    await writeFile(join(dir, 'resolved.log'), '');
  });
  afterEach(async () => {
    await stopProcess(child);
    child = undefined;
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Starts `bin/registry serve` with `env` added; resolves with its URL. */
  async function serve(env: NodeJS.ProcessEnv): Promise<string> {
    const port = await freePort();
    const config = join(dir, 'config.yml');
    await writeFile(
      config,
      `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'root')}\nhttp:\n  addr: 127.0.0.1:${port}\nproxy:\n  remoteurl: ${upstream.url}\n`,
    );
    const { OTEL_TRACES_EXPORTER: _t, OTEL_EXPORTER_OTLP_PROTOCOL: _p, OTEL_EXPORTER_OTLP_ENDPOINT: _e, ...base } = process.env;
    // Tracked (spec/helpers/children.ts): killed with the test worker however the test ends.
    child = spawnChild(process.execPath, ['--import', pathToFileURL(join(dir, 'register.mjs')).href, resolve('bin/registry'), 'serve', config], {
      stdio: 'ignore',
      env: { ...base, RESOLVE_LOG: join(dir, 'resolved.log'), ...env },
    }).process;
    await waitForHttp(`http://127.0.0.1:${port}/v2/`, 20_000);
    return `http://127.0.0.1:${port}`;
  }

  const resolved = async (): Promise<string[]> => (await readFile(join(dir, 'resolved.log'), 'utf8')).split('\n').filter(Boolean);

  test('spans of the request, the upstream fetch and the storage commit reach an OTLP/HTTP receiver in one trace, continued from the caller and sent upstream', async () => {
    const receiver = await startReceiver();
    try {
      const image = seedImage(upstream, 'library/busybox', 'latest', [Buffer.from('traced layer')]);
      const url = await serve({
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      });
      const traceId = '0af7651916cd43dd8448eb211c80319c';
      const parent = 'b7ad6b7169203331';
      const path = `/v2/library/busybox/blobs/${image.layers[0]}`;
      const status = await new Promise<number>((r, j) =>
        http
          .get(`${url}${path}`, { headers: { traceparent: `00-${traceId}-${parent}-01` } }, (res) => res.resume().on('end', () => r(res.statusCode!)))
          .on('error', j),
      );
      expect(status).toBe(200);
      await until(() => ['storage commit', 'upstream GET', `GET ${path}`].every((n) => receiver.spans.some((s) => s.name === n)), 'the three spans', 20_000);
      const span = (name: string): OtlpSpan => receiver.spans.find((s) => s.name === name)!;
      const server = span(`GET ${path}`);
      expect(server.traceId).toBe(traceId);
      expect(server.parentSpanId).toBe(parent);
      const fetch = span('upstream GET');
      expect(fetch).toMatchObject({ traceId, parentSpanId: server.spanId });
      expect(span('storage commit').traceId).toBe(traceId);
      expect(receiver.service).toContain('distribution');
      // The upstream was asked within the same trace, by the fetch's span.
      const hit = upstream.hits.find((h) => h.method === 'GET' && h.path === path)!;
      expect(hit.traceparent).toBe(`00-${traceId}-${fetch.spanId}-01`);
      expect(await resolved()).toContain('@opentelemetry/sdk-trace-node');
    } finally {
      await receiver.close();
    }
  });

  test('a start without OTEL_TRACES_EXPORTER never loads the OpenTelemetry SDK', async () => {
    const url = await serve({});
    const status = await new Promise<number>((r, j) => http.get(`${url}/v2/`, (res) => res.resume().on('end', () => r(res.statusCode!))).on('error', j));
    expect(status).toBe(200);
    expect(await resolved()).toEqual([]);
  });

  test('the variables: none or unset is off, an exporter or protocol it cannot honour refuses', () => {
    expect(tracingSettings({})).toBeUndefined();
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'none' })).toBeUndefined();
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_SDK_DISABLED: 'true' })).toBeUndefined();
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp' })).toEqual({ exporter: 'otlp', protocol: 'http/protobuf' });
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' })).toEqual({
      exporter: 'otlp',
      protocol: 'http/json',
    });
    expect(() => tracingSettings({ OTEL_TRACES_EXPORTER: 'zipkin' })).toThrow('OTEL_TRACES_EXPORTER=zipkin');
    expect(() => tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow('OTEL_EXPORTER_OTLP_PROTOCOL=grpc');
  });
});
