/**
 * Authentication with real peers: Debian's docker-registry protected by htpasswd as the upstream
 * (the official 2.8 proxy cannot use a Basic upstream; ours must), and our mirror protected by
 * htpasswd in front of skopeo, with and without credentials.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage } from '../helpers/images.js';
import { pushImage, pullImage, skopeo } from '../helpers/skopeo.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

/** An htpasswd line made by Apache's own tool, as operators make them. */
function htpasswdLine(user: string, password: string): string {
  return execFileSync('htpasswd', ['-Bbn', user, password], { encoding: 'utf8' }).trim();
}

function htpasswdInstalled(): boolean {
  try {
    execFileSync('htpasswd', ['-Bbn', 'a', 'b'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describeInterop(
  'authentication against real peers',
  () => {
    let dir: string;
    let upstream: DistributionProcess;
    const image = buildImage({ layers: [20_000, 300], seed: 'auth' });

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'interop-auth-'));
      await writeFile(join(dir, 'upstream.htpasswd'), `${htpasswdLine('mirror', 'upstream-pass')}\n`);
      upstream = await startDistribution({ htpasswd: { realm: 'upstream-realm', path: join(dir, 'upstream.htpasswd') } });
      await pushImage(upstream.hostPort, 'team/app:1.0', image, { creds: 'mirror:upstream-pass' });
    }, 120_000);
    afterAll(async () => {
      await upstream?.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test('an htpasswd-protected docker-registry upstream: skopeo pulls through the mirror with proxy.username/password', async () => {
      const mirror = await startMirror(upstream.url, { proxyYaml: 'username: mirror\npassword: upstream-pass' });
      try {
        const pulled = await pullImage(mirror.url.replace('http://', ''), 'team/app:1.0');
        expect(pulled.manifestDigest).toBe(image.manifest.digest);
        for (const layer of image.layers) expect(pulled.blobs).toContain(layer.digest);
      } finally {
        await mirror.close();
      }
    });

    test('wrong upstream credentials give the client a clean 4xx registry error', async () => {
      const mirror: TestMirror = await startMirror(upstream.url, { proxyYaml: 'username: mirror\npassword: wrong' });
      try {
        const res = await request(mirror.url).get('/v2/team/app/manifests/1.0').set('Accept', ACCEPT);
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expect(['UNAUTHORIZED', 'DENIED']).toContain(res.body.errors[0].code);
        const r = await skopeo(['inspect', '--tls-verify=false', `docker://${mirror.url.replace('http://', '')}/team/app:1.0`]);
        expect(r.code).not.toBe(0);
      } finally {
        await mirror.close();
      }
    });

    test('an htpasswd-protected mirror: skopeo is refused without credentials and pulls with them', async () => {
      await writeFile(join(dir, 'mirror.htpasswd'), `${htpasswdLine('dev', 'dev-pass')}\n`);
      const mirror = await startMirror(upstream.url, {
        proxyYaml: 'username: mirror\npassword: upstream-pass',
        extraYaml: `auth:\n  htpasswd:\n    realm: mirror-realm\n    path: ${join(dir, 'mirror.htpasswd')}`,
      });
      const hostPort = mirror.url.replace('http://', '');
      try {
        const challenge = await request(mirror.url).get('/v2/');
        expect(challenge.status).toBe(401);
        expect(challenge.headers['www-authenticate']).toBe('Basic realm="mirror-realm"');
        const refused = await skopeo(['inspect', '--tls-verify=false', `docker://${hostPort}/team/app:1.0`]);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr.toLowerCase()).toMatch(/unauthorized|authentication required/);
        const wrong = await skopeo(['inspect', '--tls-verify=false', '--creds', 'dev:nope', `docker://${hostPort}/team/app:1.0`]);
        expect(wrong.code).not.toBe(0);
        const pulled = await pullImage(hostPort, 'team/app:1.0', { creds: 'dev:dev-pass' });
        expect(pulled.manifestDigest).toBe(image.manifest.digest);
      } finally {
        await mirror.close();
      }
    });
  },
  { what: 'htpasswd (apache2-utils)', available: htpasswdInstalled },
);
