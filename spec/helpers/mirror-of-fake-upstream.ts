/**
 * The set-up most proxy specs share: a fresh programmable upstream and a mirror of it per test.
 * `beforeEach(async () => ({ upstream, mirror } = await mirrorOfFakeUpstream()))` and
 * `afterEach(() => closeBoth({ upstream, mirror }))`.
 */
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';
import { startMirror, type TestMirror } from './mirror.js';

/** A fake upstream and a mirror whose `proxy.remoteurl` it is. */
export async function mirrorOfFakeUpstream(opts: Parameters<typeof startMirror>[1] = {}): Promise<{ upstream: FakeUpstream; mirror: TestMirror }> {
  const upstream = await startFakeUpstream();
  return { upstream, mirror: await startMirror(upstream.url, opts) };
}

/** Stops the mirror, then its upstream (that too when the mirror's stop fails, whose error follows). */
export async function closeBoth(both: { upstream: FakeUpstream; mirror: TestMirror }): Promise<void> {
  try {
    await both.mirror.close();
  } finally {
    await both.upstream.close();
  }
}
