/**
 * `policy.repository.classes` against Debian's docker-registry (distribution 2.8): the same pushes
 * (a docker image, a docker plugin, an OCI image, an OCI artifact, an index) under each setting,
 * and with token auth, tokens naming the repository with a class, without one and with two: the
 * same answers, status, code and message, from both.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution } from '../helpers/upstream-registry.js';
import { startMirror } from '../helpers/mirror.js';
import { OCI_INDEX, OCI_MANIFEST, pushBlob, pushManifest, sha256, type Auth } from '../helpers/push.js';
import { makeTokenIssuer, type TokenAccess } from '../helpers/token-server.js';

const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
const layer = Buffer.from('a layer of the classes test');

/** An image manifest of `mediaType` whose config has `configType`. */
function image(mediaType: string, configType: string): Buffer {
  const layerType = mediaType === DOCKER_MANIFEST ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.oci.image.layer.v1.tar+gzip';
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: configType, digest: sha256(config), size: config.length },
      layers: [{ mediaType: layerType, digest: sha256(layer), size: layer.length }],
    }),
  );
}

const ociImage = image(OCI_MANIFEST, 'application/vnd.oci.image.config.v1+json');
/** The pushes, each by its own tag: [tag, payload, media type]. */
const PUSHES: readonly (readonly [string, Buffer, string])[] = [
  ['docker-image', image(DOCKER_MANIFEST, 'application/vnd.docker.container.image.v1+json'), DOCKER_MANIFEST],
  ['docker-plugin', image(DOCKER_MANIFEST, 'application/vnd.docker.plugin.v1+json'), DOCKER_MANIFEST],
  ['oci-image', ociImage, OCI_MANIFEST],
  ['oci-artifact', image(OCI_MANIFEST, 'application/vnd.cncf.helm.config.v1+json'), OCI_MANIFEST],
  [
    'index',
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, digest: sha256(ociImage), size: ociImage.length, platform: { architecture: 'amd64', os: 'linux' } }],
      }),
    ),
    OCI_INDEX,
  ],
];

interface Answer {
  readonly tag: string;
  readonly status: number;
  readonly code?: string;
  readonly message?: string;
}

/** Pushes the config, the layer and then each of `pushes` to `repo` at `url`; the answers. */
async function pushAll(url: string, repo: string, pushes: readonly (readonly [string, Buffer, string])[], auth: Auth = {}): Promise<Answer[]> {
  await pushBlob(url, repo, config, auth);
  await pushBlob(url, repo, layer, auth);
  const answers: Answer[] = [];
  for (const [tag, payload, mediaType] of pushes) {
    const res = await pushManifest(url, repo, tag, payload, mediaType, auth);
    const error = (res.body as { errors?: { code?: string; message?: string }[] } | undefined)?.errors?.[0];
    answers.push({ tag, status: res.status, code: error?.code, message: error?.message });
  }
  return answers;
}

const classesYaml = (classes: readonly string[] | undefined): string[] =>
  classes === undefined ? [] : ['policy:', '  repository:', `    classes: [${classes.join(', ')}]`];

describeInterop('policy.repository.classes, as distribution 2.8', () => {
  test('each push gets the official answer under each setting of the classes', async () => {
    const denied = (message: string): Partial<Answer> => ({ status: 403, code: 'DENIED', message });
    const settings: readonly [readonly string[] | undefined, Record<string, Partial<Answer>>][] = [
      [undefined, {}],
      [['image'], { 'docker-plugin': denied('registry does not allow plugin manifest') }],
      [
        ['plugin'],
        {
          'docker-image': denied('registry does not allow image manifest'),
          'oci-image': denied('registry does not allow image manifest'),
          // Its child was refused: an index has no class, its children must be there.
          index: { status: 400, code: 'MANIFEST_BLOB_UNKNOWN' },
        },
      ],
      [['image', 'plugin'], {}],
    ];
    for (const [classes, expected] of settings) {
      const extra = classesYaml(classes);
      const official = await startDistribution({ extra });
      const mirror = await startMirror(official.url, { proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true', extraYaml: extra.join('\n') });
      try {
        const theirs = await pushAll(official.url, 'classes/app', PUSHES);
        const ours = await pushAll(mirror.url, 'internal/app', PUSHES);
        expect({ classes, ours }).toEqual({ classes, ours: theirs });
        // What the official answered, so that agreeing is not agreeing on nothing: an artifact's
        // unknown class is refused whenever classes are listed, each listed class accepted.
        for (const answer of theirs) {
          const artifact = answer.tag === 'oci-artifact' && classes !== undefined;
          const want = artifact ? denied('unknown manifest class for application/vnd.cncf.helm.config.v1+json') : (expected[answer.tag] ?? { status: 201 });
          expect({ classes, answer }).toEqual({ classes, answer: expect.objectContaining(want) as unknown });
        }
      } finally {
        await mirror.close();
        await official.destroy();
      }
    }
  }, 180_000);

  test('a token naming the repository with a class, without one, or with two: the same answers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'classes-token-'));
    const issuer = makeTokenIssuer(dir);
    const extra = [...classesYaml(['image', 'plugin']), issuer.authYaml('https://auth.test/token')];
    const official = await startDistribution({ extra });
    const mirror = await startMirror(official.url, { proxyYaml: 'hosted: [internal/]', extraYaml: extra.join('\n') });
    const dockerOnly = PUSHES.slice(0, 2);
    const grants: readonly [string, (name: string) => TokenAccess[], Record<string, number>][] = [
      ['no class', (name) => [{ name, actions: ['pull', 'push'] }], { 'docker-image': 201, 'docker-plugin': 403 }],
      ['plugin', (name) => [{ name, class: 'plugin', actions: ['pull', 'push'] }], { 'docker-image': 403, 'docker-plugin': 201 }],
      [
        'image and plugin',
        (name) => [
          { name, class: 'image', actions: ['pull', 'push'] },
          { name, class: 'plugin', actions: ['pull'] },
        ],
        { 'docker-image': 201, 'docker-plugin': 201 },
      ],
    ];
    try {
      for (const [what, grant, expected] of grants) {
        const bearer = async (name: string): Promise<Auth> => ({ Authorization: `Bearer ${await issuer.sign(grant(name))}` });
        const repo = `tokens-${what.replace(/ /g, '-')}`;
        const theirs = await pushAll(official.url, `classes/${repo}`, dockerOnly, await bearer(`classes/${repo}`));
        const ours = await pushAll(mirror.url, `internal/${repo}`, dockerOnly, await bearer(`internal/${repo}`));
        expect({ what, ours }).toEqual({ what, ours: theirs });
        expect({ what, statuses: Object.fromEntries(theirs.map((a) => [a.tag, a.status])) }).toEqual({ what, statuses: expected });
        for (const a of theirs.filter((x) => x.status === 403))
          expect(a.message).toBe(`repository not authorized for ${a.tag.slice('docker-'.length)} manifest`);
      }
    } finally {
      await mirror.close();
      await official.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
