/**
 * The image (Dockerfile) built and run in the real Docker engine exactly as `registry:2` is run.
 * No base image can be pulled here, so the test makes `node:24-bookworm-slim` offline
 * (spec/helpers/offline-node-base.ts: Debian's packages and the npm registry's Node binary,
 * `docker import`), builds the Dockerfile on it from what `npm run build` laid out (the build
 * fetches nothing and runs nothing inside), and runs the container with a volume Debian's
 * docker-registry (distribution 2.8) wrote as a pull-through cache, a config.yml mounted where
 * registry:2 reads it, REGISTRY_* overrides, on the host's network (the engine here has no bridge).
 * dockerd pulls through it as a `registry-mirrors` entry and directly; `docker stop` ends it by
 * its own SIGTERM handler within 2 s with the schedule saved. Then Debian's docker-compose builds
 * and runs the repository's docker-compose.yml. Every container is removed and dockerd stopped
 * however the tests end.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage } from '../helpers/images.js';
import { pullImage, pushImage } from '../helpers/skopeo.js';
import { countingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { freePort, waitForHttp } from '../helpers/ports.js';
import { dockerAvailable, startDockerd, DOCKER_BIN, type Dockerd } from '../helpers/dockerd.js';
import { makeOfflineNodeBase } from '../helpers/offline-node-base.js';
import { existsSync } from 'node:fs';
import { parseDigest } from '../../lib/distribution/digest.js';
import { layerLinkPath } from '../../lib/storage/paths.js';
import { until } from '../helpers/until.js';
import yaml from 'js-yaml';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const COMPOSE_BIN = '/usr/bin/docker-compose';
const IMAGE = 'registry-mirror:test';
const pulledDigest = (out: string): string | undefined => /^Digest: (sha256:[0-9a-f]{64})$/m.exec(out)?.[1];
/** A line of the registry's own log format (distribution's logrus text format). */
const REGISTRY_LINE = /^time="[^"]+" level=(debug|info|warning|error) msg=/;

describeInterop(
  'the image (Dockerfile) in the Docker engine, run as registry:2 is run',
  () => {
    let dir: string;
    let upstream: DistributionProcess;
    let counter: CountingProxy;
    let dockerd: Dockerd;
    let port: number;
    let volume: string;
    let nodeVersion: string;
    const busybox = buildImage({ layers: [6000, 300], seed: 'image-busybox', format: 'docker' });
    const alpine = buildImage({ layers: [5000], seed: 'image-alpine' });

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'image-test-'));
      volume = join(dir, 'volume');
      port = await freePort();
      const base = makeOfflineNodeBase(dir);
      base.catch(() => undefined);
      upstream = await startDistribution();
      await pushImage(upstream.hostPort, 'library/busybox:1.36', busybox);
      await pushImage(upstream.hostPort, 'library/alpine:latest', alpine);
      // The volume: what registry:2 (Debian's docker-registry as a pull-through cache) wrote.
      const official = await startDistribution({ proxy: { remoteurl: upstream.url }, rootDir: volume });
      try {
        expect((await pullImage(official.hostPort, 'library/busybox:1.36')).manifestDigest).toBe(busybox.manifest.digest);
        // distribution 2.8 stores a proxied blob in a goroutine of its own, beside the client's copy:
        // the pull can end before the last blob is in the volume. Stopped earlier, the volume would
        // lack it, and the mirror would rightly fetch it again.
        const linked = (d: string): boolean => existsSync(join(volume, layerLinkPath('library/busybox', parseDigest(d)!)));
        await until(() => [busybox.config, ...busybox.layers].every((b) => linked(b.digest)), "docker-registry's cache of every busybox blob", 60_000);
      } finally {
        await official.destroy();
      }
      counter = await countingProxy(upstream.url);
      dockerd = await startDockerd({ registryMirrors: [`http://127.0.0.1:${port}`], insecureRegistries: [`127.0.0.1:${port}`] });
      const made = await base;
      nodeVersion = made.nodeVersion;
      await dockerd.ok([
        'import',
        '--change',
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        '--change',
        'CMD ["node"]',
        made.tarball,
        'node:24-bookworm-slim',
      ]);
      await rm(join(dir, 'node-base'), { recursive: true, force: true });
      await dockerd.ok(['build', '-t', IMAGE, repoRoot], { timeoutMs: 300_000 });
    }, 600_000);

    afterAll(async () => {
      if (dockerd) {
        const ids = (await dockerd.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
        if (ids.length > 0) await dockerd.docker(['rm', '-f', ...ids]);
        await dockerd.stop();
      }
      await counter?.close();
      await upstream?.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    }, 120_000);

    test("registry:2's conventions: port, volume, config paths, entrypoint and command, on a current Node LTS, only what serving needs", async () => {
      expect(nodeVersion).toMatch(/^v24\./);
      const config = JSON.parse(await dockerd.ok(['image', 'inspect', '--format', '{{json .Config}}', IMAGE])) as {
        ExposedPorts: Record<string, unknown>;
        Volumes: Record<string, unknown>;
        Entrypoint: string[];
        Cmd: string[];
        Env: string[];
      };
      expect(Object.keys(config.ExposedPorts)).toEqual(['5000/tcp']);
      // Huge pages for malloc's heap (docs/performance.md), as the bench runs ours.
      expect(config.Env).toContain('GLIBC_TUNABLES=glibc.malloc.hugetlb=1');
      expect(Object.keys(config.Volumes)).toEqual(['/var/lib/registry']);
      expect(config.Entrypoint).toEqual(['registry']);
      expect(config.Cmd).toEqual(['serve', '/etc/docker/registry/config.yml']);
      const version = await dockerd.ok(['run', '--rm', '--network', 'host', IMAGE, '--version']);
      expect(version).toMatch(/^registry .* 0\.\d+\.\d+/);
      // Both config paths hold the default configuration: a pull-through cache of Docker Hub on the volume.
      for (const path of ['/etc/docker/registry/config.yml', '/etc/distribution/config.yml']) {
        const text = await dockerd.ok(['run', '--rm', '--network', 'host', '--entrypoint', 'cat', IMAGE, path]);
        expect(text).toMatch(/^\s+rootdirectory: \/var\/lib\/registry$/m);
        expect(text).toMatch(/^\s+remoteurl: https:\/\/registry-1\.docker\.io$/m);
      }
      // What the image adds to its base: the bundle and the packages it loads (the AWS SDK).
      const size = async (ref: string): Promise<number> => Number((await dockerd.ok(['image', 'inspect', '--format', '{{.Size}}', ref])).trim());
      const added = (await size(IMAGE)) - (await size('node:24-bookworm-slim'));
      expect(added).toBeGreaterThan(1_000_000);
      expect(added).toBeLessThan(30_000_000);
    }, 120_000);

    test("with registry:2's volume, config mount and REGISTRY_* variables: serves what docker-registry cached, pulls through as a mirror and directly, stops within 2 s with the schedule saved", async () => {
      const configFile = join(dir, 'config.yml');
      // A registry:2 configuration as operators write it; the environment overrides the address and upstream.
      await writeFile(
        configFile,
        'version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\nproxy:\n  remoteurl: https://registry-1.docker.io\n',
      );
      await dockerd.ok([
        'run',
        '-d',
        '--name',
        'mirror',
        '--network',
        'host',
        '-v',
        `${volume}:/var/lib/registry`,
        '-v',
        `${configFile}:/etc/docker/registry/config.yml:ro`,
        '-e',
        `REGISTRY_HTTP_ADDR=127.0.0.1:${port}`,
        '-e',
        `REGISTRY_PROXY_REMOTEURL=${counter.url}`,
        IMAGE,
      ]);
      await waitForHttp(`http://127.0.0.1:${port}/v2/`, 60_000).catch(async (err: Error) => {
        throw new Error(`${err.message}\n${JSON.stringify(await dockerd.docker(['logs', 'mirror']))}`);
      });

      // registry-mirrors: busybox comes from the volume docker-registry wrote (no blob fetched again).
      expect(pulledDigest(await dockerd.ok(['pull', 'busybox:1.36']))).toBe(busybox.manifest.digest);
      expect(counter.hits.filter((h) => h.startsWith('GET /v2/library/busybox/blobs/'))).toEqual([]);
      // Directly, as where docker.io is blocked: a cold image, fetched through the container.
      expect(pulledDigest(await dockerd.ok(['pull', `127.0.0.1:${port}/library/alpine`]))).toBe(alpine.manifest.digest);
      expect(counter.hits).toContain(`GET /v2/library/alpine/blobs/${alpine.layers[0]!.digest}`);

      // -t 2: were the container still running after 2 s, docker would SIGKILL it (exit code 137).
      await dockerd.ok(['stop', '-t', '2', 'mirror'], { timeoutMs: 60_000 });
      const state = JSON.parse(await dockerd.ok(['inspect', '--format', '{{json .State}}', 'mirror'])) as { ExitCode: number; OOMKilled: boolean };
      expect(state.ExitCode).toBe(0);
      // The schedule as the next start reads it: scheduler-state.json, and the journals beside it
      // that a start merges into it (lib/expiry/state-store.ts).
      const saved = [
        join(volume, 'scheduler-state.json'),
        ...(await readdir(join(volume, '.scheduler-journal')).catch(() => [])).map((f) => join(volume, '.scheduler-journal', f)),
      ];
      const texts = await Promise.all(saved.map((f) => readFile(f, 'utf8').catch((err: Error) => err.message)));
      const holdsAlpine = texts.some((t) => t.includes(`library/alpine@${alpine.layers[0]!.digest}`));
      if (!holdsAlpine)
        throw new Error(
          `the schedule saved (${saved.join(', ')}) has no entry of library/alpine:\n${texts.join('\n')}\n${JSON.stringify(await dockerd.docker(['logs', 'mirror']))}`,
        );

      // The container's output is the registry's own log, nothing else (no npm, no Node warning).
      const logs = await dockerd.docker(['logs', 'mirror']);
      const lines = `${logs.stdout}${logs.stderr}`.split('\n').filter(Boolean);
      expect(lines.filter((l) => !REGISTRY_LINE.test(l))).toEqual([]);
      expect(lines.some((l) => l.includes(`msg="listening on 127.0.0.1:${port}"`))).toBe(true);
      expect(
        lines.some((l) =>
          l.includes(
            'msg="SIGTERM received: finishing in-flight requests (up to 1000 ms, http.draintimeout), saving the schedule, then exiting (within 1800 ms)"',
          ),
        ),
      ).toBe(true);
      // Its own measure of the stop, within the bound it stated (spec/shutdown.test.ts tests it at every moment).
      const stopped = lines.map((l) => /msg="stopped (\d+) ms after SIGTERM"/.exec(l)).find(Boolean);
      expect(Number(stopped?.[1])).toBeLessThanOrEqual(1800);
      await dockerd.ok(['rm', 'mirror']);
    }, 240_000);

    test('a config mounted where registry:3 reads it (/etc/distribution/config.yml) is the one served', async () => {
      const configFile = join(dir, 'config-v3.yml');
      const v3port = await freePort();
      await writeFile(
        configFile,
        `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: 127.0.0.1:${v3port}\nproxy:\n  remoteurl: ${counter.url}\n`,
      );
      await dockerd.ok(['run', '-d', '--name', 'mirror-v3', '--network', 'host', '-v', `${configFile}:/etc/distribution/config.yml:ro`, IMAGE]);
      try {
        await waitForHttp(`http://127.0.0.1:${v3port}/v2/`, 60_000);
        const res = await fetch(`http://127.0.0.1:${v3port}/v2/library/alpine/manifests/latest`, {
          method: 'HEAD',
          headers: { Accept: alpine.manifest.mediaType },
        });
        expect(res.headers.get('docker-content-digest')).toBe(alpine.manifest.digest);
      } finally {
        await dockerd.docker(['rm', '-f', 'mirror-v3']);
      }
    }, 120_000);

    test("Debian's docker-compose builds and runs docker-compose.yml", async () => {
      const composePort = await freePort();
      // The engine here has no bridge, and docker-compose refuses published ports on the host's
      // network, which an override file cannot remove: the test runs the repository's file with
      // only that changed (the service on the host's network, a test address and upstream).
      const file = yaml.load(await readFile(join(repoRoot, 'docker-compose.yml'), 'utf8')) as { services: { mirror: Record<string, unknown> } };
      const mirror = file.services.mirror;
      expect(mirror).toMatchObject({ build: '.', image: 'registry-mirror' });
      expect(mirror.command).toBeUndefined();
      delete mirror.ports;
      mirror.build = repoRoot;
      mirror.network_mode = 'host';
      mirror.environment = { ...(mirror.environment as object), REGISTRY_HTTP_ADDR: `127.0.0.1:${composePort}`, REGISTRY_PROXY_REMOTEURL: counter.url };
      const composeFile = join(dir, 'docker-compose.yml');
      await writeFile(composeFile, yaml.dump(file));
      const compose = (args: string[]): Promise<{ code: number; out: string }> =>
        new Promise((resolve) =>
          execFile(
            COMPOSE_BIN,
            ['-p', 'imagetest', '-f', composeFile, ...args],
            {
              cwd: repoRoot,
              env: { ...process.env, DOCKER_HOST: `unix://${join(dockerd.dir, 'docker.sock')}` },
              timeout: 300_000,
              maxBuffer: 16 * 1024 * 1024,
            },
            (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
          ),
        );
      try {
        const up = await compose(['up', '-d', '--build']);
        if (up.code !== 0) throw new Error(`docker-compose up failed:\n${up.out}`);
        await waitForHttp(`http://127.0.0.1:${composePort}/v2/`, 60_000);
        expect(pulledDigest(await dockerd.ok(['pull', `127.0.0.1:${composePort}/library/busybox:1.36`]))).toBe(busybox.manifest.digest);
        const logs = await compose(['logs', '--no-color', 'mirror']);
        expect(logs.out).toContain(`msg="listening on 127.0.0.1:${composePort}"`);
        const stopped = await compose(['stop', '-t', '2']);
        expect(stopped.code).toBe(0);
        const ids = (await dockerd.ok(['ps', '-aq', '--filter', 'label=com.docker.compose.project=imagetest'])).split('\n').filter(Boolean);
        expect(ids).toHaveLength(1);
        const exited = (await dockerd.ok(['inspect', '--format', '{{.State.ExitCode}} {{.Config.Image}}', ids[0]!])).trim();
        if (exited !== '0 registry-mirror') throw new Error(`${exited}\n${JSON.stringify(await dockerd.docker(['logs', ids[0]!]))}`);
      } finally {
        await compose(['down', '-v', '-t', '2']);
      }
    }, 300_000);
  },
  { what: 'dockerd, containerd and docker-compose (run as root)', available: () => dockerAvailable() && existsSync(COMPOSE_BIN) && existsSync(DOCKER_BIN) },
);
