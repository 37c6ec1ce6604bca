/**
 * The Docker engine itself (Debian's dockerd 20.10 and its client) against the mirror, as operators
 * run it: `registry-mirrors` in daemon.json (dockerd uses the mirror for Docker Hub names only and
 * asks for `library/...`, so the mirror's upstream, Debian's docker-registry, holds `library/...`
 * names), direct pulls of `<mirror>/library/busybox` where docker.io is blocked, pulls with the
 * upstream stopped, `docker login` to mirrors with `auth.htpasswd` and `auth.token`, pushes and a
 * classic `docker build` into a hosted prefix with cross-repository mounts, and the refusal of a
 * push to a cached name. docker.io itself is unreachable here: a pull that succeeds came through
 * the mirror. One dockerd serves every case; each case removes the local images it pulled, so
 * that the next pull asks the mirror again.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage, buildIndex } from '../helpers/images.js';
import { pushImage } from '../helpers/skopeo.js';
import { countingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { dockerAvailable, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { makeTokenIssuer, startTokenServer, type TokenIssuer, type TokenServer } from '../helpers/token-server.js';

const hostPort = (m: TestMirror): string => m.url.replace('http://', '');
/** The `Digest: sha256:...` line `docker pull` prints. */
const pulledDigest = (out: string): string | undefined => /^Digest: (sha256:[0-9a-f]{64})$/m.exec(out)?.[1];
/** The `<tag>: digest: sha256:... size: N` line `docker push` prints. */
const pushedDigest = (out: string): string | undefined => /: digest: (sha256:[0-9a-f]{64}) size: \d+/.exec(out)?.[1];

/** The manifest a mirror serves for `repo:ref` (Docker schema 2 accepted), with its digest. */
async function served(
  mirror: TestMirror,
  repo: string,
  ref: string,
  authorization?: string,
): Promise<{ digest: string | null; config: string; layers: string[] }> {
  const res = await fetch(`${mirror.url}/v2/${repo}/manifests/${ref}`, {
    headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json', ...(authorization ? { Authorization: authorization } : {}) },
  });
  if (res.status !== 200) throw new Error(`GET ${repo}:${ref}: ${res.status} ${await res.text()}`);
  const m = (await res.json()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  return { digest: res.headers.get('docker-content-digest'), config: m.config.digest, layers: m.layers.map((l) => l.digest) };
}

describeInterop(
  'the Docker engine (dockerd 20.10) pulling, logging in, pushing and building through the mirror',
  () => {
    let dir: string;
    let upstream: DistributionProcess;
    let counter: CountingProxy;
    let open: TestMirror;
    let basic: TestMirror;
    let token: TestMirror;
    let tokens: TokenServer;
    let issuer: TokenIssuer;
    let dockerd: Dockerd;
    const busybox = buildImage({ layers: [6000, 300], seed: 'dockerd-busybox', format: 'docker' });
    const alpine = buildImage({ layers: [5000], seed: 'dockerd-alpine' });
    const nginxAmd = buildImage({ layers: [4000], seed: 'dockerd-nginx-amd64' });
    const nginxArm = buildImage({ layers: [4000], seed: 'dockerd-nginx-arm64', platform: { os: 'linux', architecture: 'arm64' } });
    const nginx = buildIndex([nginxAmd, nginxArm]);
    const app = buildImage({ layers: [3000], seed: 'dockerd-team-app' });

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'docker-engine-'));
      upstream = await startDistribution();
      await Promise.all([
        pushImage(upstream.hostPort, 'library/busybox:1.36', busybox),
        pushImage(upstream.hostPort, 'library/alpine:latest', alpine),
        pushImage(upstream.hostPort, 'library/nginx:latest', nginx, { all: true }),
        pushImage(upstream.hostPort, 'team/app:1.0', app),
      ]);
      counter = await countingProxy(upstream.url);
      await writeFile(join(dir, 'htpasswd'), `${execFileSync('htpasswd', ['-Bbn', 'dev', 'dev-pass'], { encoding: 'utf8' }).trim()}\n`);
      issuer = makeTokenIssuer(dir);
      tokens = await startTokenServer(issuer, {
        users: { carol: 'carol-pass' },
        // Everyone may pull; only carol may push, and only to the hosted prefix.
        anonymous: true,
        allow: (user, name, action) => action === 'pull' || (user === 'carol' && action === 'push' && name.startsWith('internal/')),
      });
      [open, basic, token] = await Promise.all([
        startMirror(counter.url, { proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true' }),
        startMirror(counter.url, {
          proxyYaml: 'hosted: [internal/]',
          extraYaml: `auth:\n  htpasswd:\n    realm: mirror-realm\n    path: ${join(dir, 'htpasswd')}`,
        }),
        startMirror(counter.url, { proxyYaml: 'hosted: [internal/]', extraYaml: issuer.authYaml(tokens.realm) }),
      ]);
      dockerd = await startDockerd({ registryMirrors: [open.url], insecureRegistries: [open, basic, token].map(hostPort) });
    }, 180_000);

    afterAll(async () => {
      await dockerd?.stop();
      await Promise.all([open?.close(), basic?.close(), token?.close()]);
      await tokens?.close();
      await counter?.close();
      await upstream?.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** Removes every local image, so that the next pull goes to a registry again. */
    const removeAllImages = async (): Promise<void> => {
      await dockerd.ok(['image', 'prune', '--all', '--force']);
      expect(await dockerd.ok(['image', 'ls', '--all', '--quiet'])).toBe('');
    };
    afterEach(removeAllImages);

    test("registry-mirrors: a single-arch image, an index, a non-library name and a short name, with the upstream's digests", async () => {
      const pulls: Array<[string, string, string, string]> = [
        // [what the user types, the name dockerd asks the mirror for, manifest digest, image ID]
        ['busybox:1.36', 'library/busybox', busybox.manifest.digest, busybox.config.digest],
        ['nginx', 'library/nginx', nginx.manifest.digest, nginxAmd.config.digest],
        ['team/app:1.0', 'team/app', app.manifest.digest, app.config.digest],
        ['docker.io/library/alpine', 'library/alpine', alpine.manifest.digest, alpine.config.digest],
      ];
      for (const [ref, name, digest, id] of pulls) {
        const out = await dockerd.ok(['pull', ref]);
        expect(pulledDigest(out)).toBe(digest);
        expect(await dockerd.ok(['image', 'inspect', '--format', '{{.Id}}', ref])).toBe(`${id}\n`);
        // It came from the mirror's upstream, under the docker.io name, by the tag asked for
        // (verified by its Docker-Content-Digest: the digest dockerd reports is the upstream's).
        const tag = ref.includes(':') ? ref.slice(ref.lastIndexOf(':') + 1) : 'latest';
        expect(counter.hits).toContain(`GET /v2/${name}/manifests/${tag}`);
      }
      // The index's linux/amd64 image, not the arm64 one.
      expect(counter.hits).toContain(`GET /v2/library/nginx/blobs/${nginxAmd.layers[0]!.digest}`);
      expect(counter.hits.some((h) => h.includes(nginxArm.layers[0]!.digest))).toBe(false);
      expect(await dockerd.repoDigests('busybox:1.36')).toEqual([`busybox@${busybox.manifest.digest}`]);
    }, 120_000);

    test('docker pull <mirror>/library/busybox directly, as where docker.io is blocked', async () => {
      const ref = `${hostPort(open)}/library/busybox:1.36`;
      expect(pulledDigest(await dockerd.ok(['pull', ref]))).toBe(busybox.manifest.digest);
      expect(await dockerd.repoDigests(ref)).toEqual([`${hostPort(open)}/library/busybox@${busybox.manifest.digest}`]);
      expect(await dockerd.ok(['image', 'inspect', '--format', '{{.Id}}', ref])).toBe(`${busybox.config.digest}\n`);
    }, 120_000);

    test('with the upstream stopped, pulls of what the mirror cached still work; the rest fails cleanly', async () => {
      // Cache the images (an earlier test may have done so already), then drop them locally.
      await dockerd.ok(['pull', 'busybox:1.36']);
      await dockerd.ok(['pull', 'nginx']);
      await removeAllImages();
      await upstream.stop();
      try {
        expect(pulledDigest(await dockerd.ok(['pull', 'busybox:1.36']))).toBe(busybox.manifest.digest);
        expect(pulledDigest(await dockerd.ok(['pull', 'nginx']))).toBe(nginx.manifest.digest);
        expect(pulledDigest(await dockerd.ok(['pull', `${hostPort(open)}/library/busybox:1.36`]))).toBe(busybox.manifest.digest);
        expect(pulledDigest(await dockerd.ok(['pull', `${hostPort(open)}/library/nginx@${nginx.manifest.digest}`]))).toBe(nginx.manifest.digest);
        const missing = await dockerd.docker(['pull', `${hostPort(open)}/library/never-cached:1`]);
        expect(missing.code).not.toBe(0);
        expect(missing.stderr).toMatch(/Error response from daemon/);
      } finally {
        await upstream.restart();
      }
    }, 120_000);

    test('push into a hosted prefix, pull it back, build FROM it and push the result with cross-repository mounts', async () => {
      const base = `${hostPort(open)}/internal/base:1`;
      const built = `${hostPort(open)}/internal/built:1`;
      await dockerd.ok(['pull', 'busybox:1.36']);
      await dockerd.ok(['tag', 'busybox:1.36', base]);
      const pushed = await dockerd.ok(['push', base]);
      // dockerd writes the manifest anew (its own JSON layout), with the same config and layers.
      const baseDigest = pushedDigest(pushed);
      expect(await served(open, 'internal/base', '1')).toEqual({
        digest: baseDigest,
        config: busybox.config.digest,
        layers: busybox.layers.map((l) => l.digest),
      });

      await removeAllImages();
      expect(pulledDigest(await dockerd.ok(['pull', base]))).toBe(baseDigest);

      const context = join(dir, 'context');
      execFileSync('mkdir', ['-p', context]);
      await writeFile(join(context, 'hello.txt'), 'built through the mirror\n');
      await writeFile(join(context, 'Dockerfile'), `FROM ${base}\nCOPY hello.txt /hello.txt\nLABEL built-by=docker-engine-test\n`);
      const build = await dockerd.docker(['build', '-t', built, context]);
      expect(build.stdout).toContain(`Step 1/3 : FROM ${base}`);
      expect(build.code).toBe(0);
      const pushBuilt = await dockerd.ok(['push', built]);
      // The base layers are mounted from internal/base, not uploaded again.
      expect(pushBuilt).toContain('Mounted from internal/base');
      const builtDigest = pushedDigest(pushBuilt);
      const builtManifest = await served(open, 'internal/built', '1');
      expect(builtManifest.digest).toBe(builtDigest);
      expect(builtManifest.layers.slice(0, 2)).toEqual(busybox.layers.map((l) => l.digest));
      expect(builtManifest.layers).toHaveLength(3);
      await removeAllImages();
      expect(pulledDigest(await dockerd.ok(['pull', built]))).toBe(builtDigest);
      expect(await dockerd.ok(['image', 'inspect', '--format', '{{index .Config.Labels "built-by"}}', built])).toBe('docker-engine-test\n');
      // Nothing hosted ever reached the upstream.
      expect(counter.hits.filter((h) => h.includes('internal/'))).toEqual([]);
    }, 120_000);

    test('a push to a cached (proxied) name is refused with the message a user sees, the same as with registry:2', async () => {
      const official = await startDistribution({ proxy: { remoteurl: upstream.url } });
      try {
        const refusal = async (registry: string): Promise<string> => {
          await dockerd.ok(['pull', `${registry}/library/busybox:1.36`]);
          await dockerd.ok(['tag', `${registry}/library/busybox:1.36`, `${registry}/library/busybox:mine`]);
          const refused = await dockerd.docker(['push', `${registry}/library/busybox:mine`]);
          expect(refused.code).not.toBe(0);
          return refused.stdout + refused.stderr;
        };
        const ours = await refusal(hostPort(open));
        // dockerd finds the layers there, then the manifest PUT gets 405 UNSUPPORTED.
        expect(ours).toContain('Layer already exists');
        expect(ours.trim().split('\n').pop()).toBe('unsupported');
        const theirs = await refusal(official.hostPort);
        expect(theirs.trim().split('\n').pop()).toBe('unsupported');
        expect(counter.hits.filter((h) => !h.startsWith('GET ') && !h.startsWith('HEAD '))).toEqual([]);
      } finally {
        await official.destroy();
      }
    }, 120_000);

    test('docker login to a mirror with auth.htpasswd: refused with a wrong password, then pulls and pushes', async () => {
      const host = hostPort(basic);
      const anonymous = await dockerd.docker(['pull', `${host}/library/busybox:1.36`]);
      expect(anonymous.code).not.toBe(0);
      expect(anonymous.stderr).toContain('no basic auth credentials');
      const wrong = await dockerd.docker(['login', '-u', 'dev', '--password-stdin', host], { input: 'nope\n' });
      expect(wrong.code).not.toBe(0);
      expect(wrong.stderr).toContain(`login attempt to http://${host}/v2/ failed with status: 401 Unauthorized`);
      const login = await dockerd.docker(['login', '-u', 'dev', '--password-stdin', host], { input: 'dev-pass\n' });
      expect(login.stdout).toContain('Login Succeeded');
      expect(login.code).toBe(0);
      expect(pulledDigest(await dockerd.ok(['pull', `${host}/team/app:1.0`]))).toBe(app.manifest.digest);
      expect(pulledDigest(await dockerd.ok(['pull', `${host}/library/busybox:1.36`]))).toBe(busybox.manifest.digest);
      await dockerd.ok(['tag', `${host}/library/busybox:1.36`, `${host}/internal/busybox:1`]);
      const pushed = pushedDigest(await dockerd.ok(['push', `${host}/internal/busybox:1`]));
      const credentials = `Basic ${Buffer.from('dev:dev-pass').toString('base64')}`;
      expect(await served(basic, 'internal/busybox', '1', credentials)).toEqual({
        digest: pushed,
        config: busybox.config.digest,
        layers: busybox.layers.map((l) => l.digest),
      });
      await dockerd.ok(['logout', host]);
      await removeAllImages();
      const loggedOut = await dockerd.docker(['pull', `${host}/internal/busybox:1`]);
      expect(loggedOut.code).not.toBe(0);
      expect(loggedOut.stderr).toContain('no basic auth credentials');
    }, 120_000);

    test("docker login to a mirror with auth.token: the token service is asked with the user's credentials, pull and push scopes granted", async () => {
      const host = hostPort(token);
      const wrong = await dockerd.docker(['login', '-u', 'carol', '--password-stdin', host], { input: 'nope\n' });
      expect(wrong.code).not.toBe(0);
      expect(wrong.stderr).toContain('unauthorized');
      const login = await dockerd.docker(['login', '-u', 'carol', '--password-stdin', host], { input: 'carol-pass\n' });
      expect(login.stdout).toContain('Login Succeeded');
      expect(pulledDigest(await dockerd.ok(['pull', `${host}/library/alpine`]))).toBe(alpine.manifest.digest);
      expect(pulledDigest(await dockerd.ok(['pull', `${host}/library/busybox:1.36`]))).toBe(busybox.manifest.digest);
      await dockerd.ok(['tag', `${host}/library/busybox:1.36`, `${host}/internal/busybox:1`]);
      const pushed = pushedDigest(await dockerd.ok(['push', `${host}/internal/busybox:1`]));
      const bearer = `Bearer ${await issuer.sign([{ name: 'internal/busybox', actions: ['pull'] }])}`;
      expect(await served(token, 'internal/busybox', '1', bearer)).toEqual({
        digest: pushed,
        config: busybox.config.digest,
        layers: busybox.layers.map((l) => l.digest),
      });
      expect(tokens.requests).toContainEqual({ user: 'carol', scopes: expect.arrayContaining(['repository:internal/busybox:push,pull']) });
      // A cached name: the token service grants pull only, so the push never gets to write.
      await dockerd.ok(['tag', `${host}/library/busybox:1.36`, `${host}/library/busybox:mine`]);
      const refused = await dockerd.docker(['push', `${host}/library/busybox:mine`]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('denied: requested access to the resource is denied');
      await dockerd.ok(['logout', host]);
    }, 120_000);
  },
  { what: 'dockerd, containerd and htpasswd (run as root)', available: dockerAvailable },
);
