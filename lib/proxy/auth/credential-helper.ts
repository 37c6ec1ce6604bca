/**
 * `proxy.exec` (distribution 3, `registry/proxy/proxyauth_exec.go`): the upstream credentials come
 * from a docker-credential-helpers program (`docker-credential-ecr-login`, `-gcr`, ...), run as
 * `<command> get` with the upstream's host on stdin; it answers `{"Username": ..., "Secret": ...}`.
 * `lifetime` unset: it runs once and its answer is kept; `0`: it runs for every request that needs
 * credentials; above 0: its answer is reused that long. Concurrent requests share one run.
 *
 * Unlike distribution, which logs the failure and goes on without credentials, a failed run is an
 * error of the request that needed it: a mirror configured for a private upstream never pulls
 * anonymously. Nothing the program prints on success reaches a message (it holds the secret).
 */
import { spawn } from 'node:child_process';

/** The program failed, timed out, or answered something that is not credentials. */
export class CredentialHelperError extends Error {
  readonly code = 'ERR_CREDENTIAL_HELPER';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CredentialHelperError';
  }
}

/** Credentials for Basic authentication (and token realms). */
interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** Options of a `CredentialHelper`. */
interface CredentialHelperOptions {
  /** The program (a path, or a name on `PATH`); run with the argument `get`, not through a shell. */
  readonly command: string;
  /** Undefined: run once; 0: every time; above 0: reuse an answer this many ms. */
  readonly lifetimems?: number;
  /** What the program reads on stdin: the upstream's host (`host[:port]`). */
  readonly serverUrl: string;
  /** A run that takes longer is killed and fails (default 60 s). */
  readonly timeoutms?: number;
  readonly now?: () => number;
}

/** How much of a failed program's output a message quotes. */
const MAX_QUOTED = 200;

/** Runs a credential helper as `proxy.exec` says. */
export class CredentialHelper {
  private cached?: { credentials: Credentials; expiresAt: number };
  private pending?: Promise<Credentials>;
  private readonly now: () => number;
  /** Runs started (for tests and metrics). */
  runs = 0;

  constructor(private readonly o: CredentialHelperOptions) {
    this.now = o.now ?? Date.now;
  }

  /** The credentials, from the kept answer while it lasts, else from a run of the program. */
  async credentials(): Promise<Credentials> {
    if (this.cached && this.now() < this.cached.expiresAt) return this.cached.credentials;
    this.pending ??= this.run().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async run(): Promise<Credentials> {
    this.runs++;
    const started = this.now();
    const { code, stdout, stderr } = await execute(this.o.command, this.o.serverUrl, this.o.timeoutms ?? 60_000);
    if (code !== 0) {
      // The protocol's errors are one line on stdout ("credentials not found in native keychain").
      const said = (stdout.trim() || stderr.trim()).split('\n')[0]!.slice(0, MAX_QUOTED);
      throw new CredentialHelperError(`credential helper ${this.o.command} get failed for ${this.o.serverUrl} (${code}): ${said || 'no message'}`);
    }
    let answer: { Username?: unknown; Secret?: unknown };
    try {
      answer = JSON.parse(stdout) as typeof answer;
    } catch (err) {
      throw new CredentialHelperError(`credential helper ${this.o.command} get answered no JSON for ${this.o.serverUrl}`, { cause: err });
    }
    if (typeof answer?.Username !== 'string' || typeof answer.Secret !== 'string' || answer.Secret === '') {
      throw new CredentialHelperError(`credential helper ${this.o.command} get answered no Username and Secret for ${this.o.serverUrl}`);
    }
    const credentials = { username: answer.Username, password: answer.Secret };
    const life = this.o.lifetimems;
    if (life === undefined) this.cached = { credentials, expiresAt: Infinity };
    else if (life > 0) this.cached = { credentials, expiresAt: started + life };
    return credentials;
  }
}

/** Runs `command get` with `input` on stdin; `code` is the exit code, or a description of why there is none. */
function execute(command: string, input: string, timeoutms: number): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    const done = (code: number | string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    };
    const child = spawn(command, ['get'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done(`no answer within ${timeoutms} ms`);
    }, timeoutms);
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ENOENT' ? 'not found' : err.message));
    child.on('close', (code, signal) => done(code ?? `killed by ${signal}`));
    // A program that exits without reading its input must not fail the run with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}
