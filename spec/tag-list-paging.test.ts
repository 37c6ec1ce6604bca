/**
 * Tag-list pagination (`?n=&last=` and `Link: <...>; rel="next"`, as distribution pages it) is the
 * same whether the upstream answers or, while it is down, the cache does: a client walking the
 * pages by their `Link` headers sees the same pages either way.
 */
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';

let upstream: FakeUpstream;
let mirror: TestMirror;
const TAGS = ['1.0', '1.1', '2.0', '2.1', '3.0'];

beforeAll(async () => {
  upstream = await startFakeUpstream();
  mirror = await startMirror(upstream.url);
  for (const tag of TAGS) {
    seedImage(upstream, 'org/app', tag, [randomBytes(50)]);
    // Cache every tag, so that the cache knows the same list.
    await request(mirror.url).get(`/v2/org/app/manifests/${tag}`).expect(200);
  }
});
afterAll(async () => {
  await mirror.close();
  await upstream.close();
});

/** Follows `Link: rel="next"` from `first`; returns each page's tags and Link header. */
async function walk(first: string): Promise<Array<{ tags: string[]; link?: string }>> {
  const pages: Array<{ tags: string[]; link?: string }> = [];
  let path: string | undefined = first;
  while (path !== undefined && pages.length < 10) {
    const res = await request(mirror.url).get(path).expect(200);
    expect(res.body.name).toBe('org/app');
    const link = res.headers.link as string | undefined;
    pages.push({ tags: res.body.tags, link });
    path = link === undefined ? undefined : /^<([^>]+)>; rel="next"$/.exec(link)![1];
  }
  return pages;
}

const EXPECTED = [
  { tags: ['1.0', '1.1'], link: '</v2/org/app/tags/list?last=1.1&n=2>; rel="next"' },
  { tags: ['2.0', '2.1'], link: '</v2/org/app/tags/list?last=2.1&n=2>; rel="next"' },
  { tags: ['3.0'], link: undefined },
];

test('the upstream answers: pages of n with a Link to the next while more follow', async () => {
  expect(await walk('/v2/org/app/tags/list?n=2')).toEqual(EXPECTED);
  expect(upstream.count(/^GET \/v2\/org\/app\/tags\/list$/)).toBe(3);
});

test('the upstream is down: the cache answers the same pages with the same Link headers', async () => {
  upstream.setDown(true);
  try {
    expect(await walk('/v2/org/app/tags/list?n=2')).toEqual(EXPECTED);
    // A page that ends exactly at the last tag has no Link; one after the last tag is empty.
    const tail = await request(mirror.url).get('/v2/org/app/tags/list?n=3&last=1.1').expect(200);
    expect(tail.body.tags).toEqual(['2.0', '2.1', '3.0']);
    expect(tail.headers.link).toBeUndefined();
    const after = await request(mirror.url).get('/v2/org/app/tags/list?n=2&last=3.0').expect(200);
    expect(after.body.tags).toEqual([]);
    const all = await request(mirror.url).get('/v2/org/app/tags/list').expect(200);
    expect(all.body.tags).toEqual(TAGS);
    expect(all.headers.link).toBeUndefined();
  } finally {
    upstream.setDown(false);
  }
});

test('tags.maxtags (distribution 3.1.1): a larger n is lowered to it, with a Link to the rest, from the upstream and from the cache; no n lists every tag', async () => {
  // On the same storage: the cache knows the tags.
  const capped = await startMirror(upstream.url, { root: mirror.root, extraYaml: 'tags:\n  maxtags: 2' });
  try {
    // Renovate asks for n=10000.
    const pages = async (): Promise<unknown> => {
      const first = await request(capped.url).get('/v2/org/app/tags/list?n=10000').expect(200);
      const all = await request(capped.url).get('/v2/org/app/tags/list').expect(200);
      return { first: first.body.tags, link: first.headers.link, all: all.body.tags };
    };
    const expected = { first: ['1.0', '1.1'], link: '</v2/org/app/tags/list?last=1.1&n=2>; rel="next"', all: TAGS };
    expect(await pages()).toEqual(expected);
    upstream.setDown(true);
    try {
      expect(await pages()).toEqual(expected);
    } finally {
      upstream.setDown(false);
    }
    // Not a number, or negative: refused as before.
    expect((await request(capped.url).get('/v2/org/app/tags/list?n=-1')).body.errors[0].code).toBe('PAGINATION_NUMBER_INVALID');
  } finally {
    await capped.close();
  }
  // The default is distribution's 1000: n=10000 of five tags lists them all.
  expect((await request(mirror.url).get('/v2/org/app/tags/list?n=10000').expect(200)).body.tags).toEqual(TAGS);
});
