/**
 * `sendFileRange` (lib/api/send-file.ts) on a real `node:http` server and a real file: the bytes of
 * every range arrive exactly, also past the point where a fast client's chunks grow; the file is
 * closed however the transfer ends; a client that goes away or a file shorter than promised ends
 * the transfer with a rejection, never a clean end.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SEND_CHUNK, SEND_CHUNK_MAX, sendFileRange } from '../lib/api/send-file.js';

const MiB = 1024 * 1024;
/** Past the 16 MiB after which a fast client's chunks grow, and not a multiple of any chunk. */
const SIZE = 40 * MiB + 12345;

/** What the server saw of one transfer. */
interface Outcome {
  readonly error?: Error;
  readonly sent: number;
  readonly file: FileHandle;
}

describe('sendFileRange', () => {
  let dir: string;
  let path: string;
  let data: Buffer;
  let server: http.Server;
  let port: number;
  /** The range the next request is answered with, and how the server's side of it ended. */
  let range: { start: number; end: number };
  let outcome: Promise<Outcome>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'send-file-'));
    path = join(dir, 'data');
    data = randomBytes(SIZE);
    await writeFile(path, data);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    let done!: (o: Outcome) => void;
    outcome = new Promise((r) => (done = r));
    server = http.createServer((_req, res) => {
      void (async () => {
        const file = await open(path);
        const sent = { bytes: 0 };
        res.writeHead(200, { 'Content-Length': range.end - range.start + 1 });
        res.flushHeaders();
        try {
          await sendFileRange(res, file, range.start, range.end, sent);
          done({ sent: sent.bytes, file });
        } catch (error) {
          res.destroy();
          done({ error: error as Error, sent: sent.bytes, file });
        }
      })();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  /** GETs the file whole, resolving with the body. */
  const get = (): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve(Buffer.concat(chunks)));
          res.on('error', reject);
        })
        .on('error', reject);
    });

  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

  it('sends the whole file, counts every byte and closes the file', async () => {
    range = { start: 0, end: SIZE - 1 };
    const body = await get();
    const o = await outcome;
    expect(o.error).toBeUndefined();
    expect(body.length).toBe(SIZE);
    expect(sha(body)).toBe(sha(data));
    expect(o.sent).toBe(SIZE);
    expect(o.file.fd).toBe(-1);
  });

  it.each([
    ['one byte at the start', 0, 0],
    ['the last byte', SIZE - 1, SIZE - 1],
    ['across the first chunk boundary', SEND_CHUNK - 10, SEND_CHUNK + 10],
    ['one large chunk', 3 * SEND_CHUNK_MAX, 4 * SEND_CHUNK_MAX - 1],
    ['from the middle to the end, through the growth', 7 * MiB + 3, SIZE - 1],
  ])('sends %s exactly', async (_name, start, end) => {
    range = { start, end };
    const body = await get();
    const o = await outcome;
    expect(o.error).toBeUndefined();
    expect(body.equals(data.subarray(start, end + 1))).toBe(true);
    expect(o.sent).toBe(end - start + 1);
    expect(o.file.fd).toBe(-1);
  });

  it('rejects and closes the file when the client goes away mid-transfer', async () => {
    range = { start: 0, end: SIZE - 1 };
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        let got = 0;
        res.on('data', (c: Buffer) => {
          got += c.length;
          // Away after 1 MiB: the server is still reading and writing.
          if (got >= MiB) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', () => undefined);
      req.on('close', resolve);
      setTimeout(() => reject(new Error('the body never started')), 10_000).unref();
    });
    const o = await outcome;
    expect(o.error?.message).toMatch(/went away|EPIPE|ECONNRESET|destroyed/);
    expect(o.sent).toBeLessThan(SIZE);
    expect(o.file.fd).toBe(-1);
  });

  it('rejects when the file is shorter than the range, after sending what it has', async () => {
    range = { start: SIZE - 100, end: SIZE + 99 };
    const body = await get().catch(() => Buffer.alloc(0));
    const o = await outcome;
    expect(o.error?.message).toMatch(/ends at byte/);
    expect(o.sent).toBe(100);
    expect(body.length).toBeLessThan(200);
    expect(o.file.fd).toBe(-1);
  });
});
