/**
 * A minimal HTTP/1.1 GET client for bulk bytes: keep-alive, reads into one fixed 4 MiB buffer
 * (`onread`), counts body bytes and discards them, so the client costs little more than the read
 * system calls. Only Content-Length bodies are supported (blobs always have one).
 */
import net from 'node:net';

/** One connection issuing GETs of `path` one after another. */
export class BulkGetter {
  private socket?: net.Socket;
  private readonly buffer = Buffer.allocUnsafe(4 << 20);
  private head: Buffer[] = [];
  private remaining = -1;
  private status = 0;
  private pending?: { resolve: (r: { status: number; bytes: number }) => void; reject: (e: Error) => void; bytes: number };

  constructor(
    private readonly hostPort: string,
    private readonly path: string,
    private readonly headers: Record<string, string> = {},
  ) {}

  /** GETs the path, reads the whole body; resolves with the status and body byte count. */
  get(): Promise<{ status: number; bytes: number }> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, bytes: 0 };
      this.head = [];
      this.remaining = -1;
      const send = (s: net.Socket): void => {
        const extra = Object.entries(this.headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('');
        s.write(`GET ${this.path} HTTP/1.1\r\nHost: ${this.hostPort}\r\n${extra}\r\n`);
      };
      if (this.socket && !this.socket.destroyed) return send(this.socket);
      const [host, port] = this.hostPort.split(':');
      const s = net.connect({ host, port: Number(port), onread: { buffer: this.buffer, callback: (n, b) => this.onData(b as Buffer, n) } });
      this.socket = s;
      s.once('connect', () => send(s));
      s.on('error', (err) => this.socket === s && this.fail(err));
      s.on('close', () => this.socket === s && this.fail(new Error('connection closed before the end of the body')));
    });
  }

  /** Closes the connection. */
  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private fail(err: Error): void {
    const p = this.pending;
    this.pending = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    p?.reject(err);
  }

  private onData(buf: Buffer, n: number): boolean {
    const p = this.pending;
    if (!p) return true;
    let off = 0;
    if (this.remaining < 0) {
      this.head.push(Buffer.from(buf.subarray(0, n)));
      const all = Buffer.concat(this.head);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return true;
      const text = all.toString('latin1', 0, end);
      this.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(text);
      if (!length) {
        this.fail(new Error(`no Content-Length in response (status ${this.status})`));
        return false;
      }
      this.remaining = Number(length[1]);
      off = n - (all.length - end - 4);
      this.head = [];
    }
    const got = Math.min(n - off, this.remaining);
    p.bytes += got;
    this.remaining -= got;
    if (this.remaining === 0) {
      this.pending = undefined;
      p.resolve({ status: this.status, bytes: p.bytes });
    }
    return true;
  }
}

/**
 * `concurrency` connections GET `path` back to back until `durationMs` has passed (each finishes
 * its current body); returns body bytes per second over the whole run.
 */
export async function bulkThroughput(
  hostPort: string,
  path: string,
  concurrency: number,
  durationMs: number,
): Promise<{ bytesPerSec: number; bytes: number; requests: number }> {
  const start = process.hrtime.bigint();
  const deadline = Date.now() + durationMs;
  let bytes = 0;
  let requests = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const getter = new BulkGetter(hostPort, path);
      try {
        do {
          const r = await getter.get();
          if (r.status !== 200) throw new Error(`GET ${path}: ${r.status}`);
          bytes += r.bytes;
          requests++;
        } while (Date.now() < deadline);
      } finally {
        getter.close();
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { bytesPerSec: bytes / seconds, bytes, requests };
}
