/**
 * A real S3 store for the tests: Ceph's RADOS Gateway from Debian's packages, as
 * /work/shared/reference/s3-test-store.md measured it. One `ceph-mon`, one `ceph-osd` on the in-RAM
 * `memstore`, `radosgw` (beast) on 127.0.0.1; every daemon in the foreground in a process group of
 * its own, all state (conf, keyring, data, logs, sockets) in one temporary directory, stopped with
 * SIGKILL (the data is in RAM; a SIGTERMed radosgw whose mon is gone lingers for minutes).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { spawnChild, type Child } from './children.js';
import { freePort, waitForHttp } from './ports.js';

const run = promisify(execFile);

/** The Debian packages the gateway needs (`.ci/run` installs them). */
export const CEPH_PACKAGES = ['ceph-mon', 'ceph-osd', 'radosgw', 'ceph-common'];
const BINARIES = [
  '/usr/bin/ceph-mon',
  '/usr/bin/ceph-osd',
  '/usr/bin/radosgw',
  '/usr/bin/ceph',
  '/usr/bin/radosgw-admin',
  '/usr/bin/ceph-authtool',
  '/usr/bin/monmaptool',
];

/** True when every Ceph binary the gateway needs is installed. */
export function cephAvailable(): boolean {
  return BINARIES.every((b) => existsSync(b));
}

/** Where a running gateway is and how to sign in; serialisable, so test workers can share one. */
export interface CephEndpoint {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  /** The cluster's temporary directory. */
  readonly dir: string;
  /** Process group ids of the daemons (each daemon leads its own group). */
  readonly pgids: readonly number[];
}

/** A gateway this process started. */
export interface CephCluster extends CephEndpoint {
  /** SIGKILLs the daemons and removes the directory. */
  stop(): Promise<void>;
}

/** An S3 client for the gateway, with the settings Pacific needs (no streaming checksums, path style). */
export function s3Client(c: Pick<CephEndpoint, 'endpoint' | 'accessKey' | 'secretKey' | 'region'>): S3Client {
  return new S3Client({
    endpoint: c.endpoint,
    region: c.region,
    forcePathStyle: true,
    credentials: { accessKeyId: c.accessKey, secretAccessKey: c.secretKey },
    // Pacific answers a streaming PutObject with a trailing checksum with 411 MissingContentLength.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Creates a bucket with a fresh name on the gateway; returns its name. */
export async function createBucket(c: CephEndpoint, prefix = 'test'): Promise<string> {
  const name = `${prefix}-${randomUUID().slice(0, 12)}`;
  const client = s3Client(c);
  try {
    await client.send(new CreateBucketCommand({ Bucket: name }));
  } finally {
    client.destroy();
  }
  return name;
}

/** Starts a cluster in a new temporary directory (about 6 s here). */
export async function startCeph(): Promise<CephCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'ceph-'));
  const children: Child[] = [];
  const kill = (): void => {
    for (const c of children) killGroup(c.pid);
  };
  try {
    const endpoint = await bootstrap(dir, children);
    return {
      ...endpoint,
      stop: async () => {
        kill();
        await Promise.all(children.map((c) => c.exited));
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    kill();
    const logs = await readLogs(dir);
    await rm(dir, { recursive: true, force: true });
    throw new Error(`the Ceph gateway did not start: ${(err as Error).message}\n${logs}`);
  }
}

/** SIGKILLs a daemon's process group (they are started detached, each leading its own). */
export function killGroup(pgid: number | undefined): void {
  if (!pgid) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

async function bootstrap(dir: string, children: Child[]): Promise<CephEndpoint> {
  const [p1, p2, rgwPort] = [await freePort(), await freePort(), await freePort()];
  const fsid = randomUUID();
  const conf = join(dir, 'ceph.conf');
  const keyring = join(dir, 'keyring');
  for (const d of ['run', 'log', 'crash', 'mon/ceph-a', 'osd/ceph-0', 'rgw']) await mkdir(join(dir, d), { recursive: true });
  const monAddr = `[v2:127.0.0.1:${p2},v1:127.0.0.1:${p1}]`;
  await writeFile(
    conf,
    [
      '[global]',
      `fsid = ${fsid}`,
      `mon host = ${monAddr}`,
      'mon initial members = a',
      'public addr = 127.0.0.1',
      'cluster addr = 127.0.0.1',
      'ms bind ipv6 = false',
      'osd pool default size = 1',
      'osd pool default min size = 1',
      'osd pool default pg num = 8',
      'osd pool default pgp num = 8',
      'osd pool default pg autoscale mode = off',
      'osd crush chooseleaf type = 0',
      'mon allow pool size one = true',
      'mon warn on pool no redundancy = false',
      'mon max pg per osd = 1000',
      // Start-up takes 16 s without it, 6 s with it.
      'paxos propose interval = 0.1',
      `run dir = ${dir}/run`,
      `admin socket = ${dir}/run/$cluster-$name.asok`,
      `pid file = ${dir}/run/$cluster-$name.pid`,
      `log file = ${dir}/log/$cluster-$name.log`,
      `crash dir = ${dir}/crash`,
      `keyring = ${keyring}`,
      `mon data = ${dir}/mon/$cluster-$id`,
      `osd data = ${dir}/osd/$cluster-$id`,
      '[osd]',
      'osd objectstore = memstore',
      // The OSD refuses writes at 95% full.
      'memstore device bytes = 4294967296',
      'osd class dir = /usr/lib/x86_64-linux-gnu/rados-classes',
      '[client.rgw]',
      // Without tcp_nodelay every small GET costs ~40 ms more.
      `rgw frontends = beast endpoint=127.0.0.1:${rgwPort} tcp_nodelay=1`,
      `rgw data = ${dir}/rgw`,
      '',
    ].join('\n'),
  );
  const c = ['-c', conf];
  await run('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
  await run('ceph-authtool', [
    keyring,
    '--gen-key',
    '-n',
    'client.admin',
    '--cap',
    'mon',
    'allow *',
    '--cap',
    'osd',
    'allow *',
    '--cap',
    'mgr',
    'allow *',
    '--cap',
    'mds',
    'allow *',
  ]);
  await run('ceph-authtool', [keyring, '--gen-key', '-n', 'osd.0', '--cap', 'mon', 'allow profile osd', '--cap', 'osd', 'allow *']);
  await run('ceph-authtool', [keyring, '--gen-key', '-n', 'client.rgw', '--cap', 'mon', 'allow rw', '--cap', 'osd', 'allow rwx']);
  await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', monAddr, join(dir, 'monmap')]);
  await run('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap'), '--keyring', keyring]);
  children.push(daemon('ceph-mon', [...c, '-f', '-i', 'a']));
  const osdUuid = randomUUID();
  await retry(() => run('ceph', [...c, '--connect-timeout', '5', 'osd', 'new', osdUuid, '0']), 'ceph osd new', 30_000);
  await run('ceph-osd', [...c, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
  children.push(daemon('ceph-osd', [...c, '-f', '-i', '0']));
  await retry(
    async () => {
      const { stdout } = await run('ceph', [...c, '--connect-timeout', '5', 'osd', 'dump']);
      if (!/^osd\.0 up/m.test(stdout)) throw new Error('osd.0 is not up yet');
    },
    'osd.0 up',
    30_000,
  );
  children.push(daemon('radosgw', [...c, '-f', '-n', 'client.rgw']));
  const endpoint = `http://127.0.0.1:${rgwPort}`;
  await waitForHttp(`${endpoint}/`, 60_000);
  const accessKey = 'TESTACCESSKEY0000000';
  const secretKey = 'testsecretkey0000000000000000000000000000';
  await retry(
    () =>
      run('radosgw-admin', [
        ...c,
        '-n',
        'client.admin',
        'user',
        'create',
        '--uid=test',
        '--display-name=test',
        `--access-key=${accessKey}`,
        `--secret-key=${secretKey}`,
      ]),
    'radosgw-admin user create',
    20_000,
  );
  return { endpoint, accessKey, secretKey, region: 'us-east-1', dir, pgids: children.map((ch) => ch.pid) };
}

function daemon(bin: string, args: string[]): Child {
  // Detached: a process group of its own, killed as a whole, and not tied to this process's
  // terminal. Tracked (spec/helpers/children.ts): the worker that started it kills the group when it
  // exits, and the run's teardown checks it is gone. Unref'd: a gateway shared by the run
  // (ceph-shared.ts) must not keep its worker from exiting.
  const child = spawnChild(bin, args, { detached: true, stdio: 'ignore' });
  child.process.unref();
  child.process.on('error', () => undefined);
  return child;
}

async function retry(fn: () => Promise<unknown>, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await fn();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function readLogs(dir: string): Promise<string> {
  const out: string[] = [];
  for (const name of ['ceph-mon.a.log', 'ceph-osd.0.log', 'ceph-client.rgw.log']) {
    const text = await readFile(join(dir, 'log', name), 'utf8').catch(() => '');
    if (text) out.push(`--- ${name} (last lines)\n${text.split('\n').slice(-15).join('\n')}`);
  }
  return out.join('\n');
}

/** `storage.s3` parameters for a bucket on the gateway, as a user writes them (extra keys override). */
export function s3Parameters(
  c: CephEndpoint,
  bucket: string,
  extra: Record<string, string | number | boolean> = {},
): Record<string, string | number | boolean> {
  return {
    accesskey: c.accessKey,
    secretkey: c.secretKey,
    region: c.region,
    regionendpoint: c.endpoint,
    bucket,
    secure: false,
    v4auth: true,
    rootdirectory: '/registry',
    ...extra,
  };
}

/** The same as YAML lines of a `storage:` section (indented for it). */
export function s3StorageYaml(params: Record<string, string | number | boolean>): string[] {
  return ['  s3:', ...Object.entries(params).map(([k, v]) => `    ${k}: ${typeof v === 'string' ? JSON.stringify(v) : v}`)];
}
