/**
 * The bench's official contenders (`BENCH_OFFICIAL_BIN`, bench/officials.ts): ids, labels from the
 * executable's `--version`, and the mistakes the setting refuses; and the scaling report's columns
 * and targets for each official found in the samples.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DISTRIBUTION_BIN } from './helpers/interop.js';
import { officialVersion, parseOfficials } from '../bench/officials.js';
import { formatScaleReport, officialsIn, type ScaleSample } from '../bench/scale/report.js';

describe('bench official contenders', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-officials-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** An executable printing `line` for `--version`, as distribution's registry does. */
  const fakeRegistry = async (name: string, line: string): Promise<string> => {
    const bin = join(dir, name);
    await writeFile(bin, `#!/bin/sh\necho "$0 ${line}"\n`);
    await chmod(bin, 0o755);
    return bin;
  };

  it("defaults to Debian's docker-registry alone, as `official`", () => {
    const [only, ...rest] = parseOfficials(undefined, () => '2.8.2');
    expect(rest).toEqual([]);
    expect(only).toEqual({ id: 'official', label: '2.8.2', bin: DISTRIBUTION_BIN });
  });

  it('labels each executable with the version it prints, the first as `official`', async () => {
    const old = await fakeRegistry('registry-2', 'github.com/docker/distribution 2.8.2+ds1');
    const v3 = await fakeRegistry('registry-3', 'github.com/distribution/distribution/v3 v3.0.0');
    expect(officialVersion(v3)).toBe(`${v3} github.com/distribution/distribution/v3 v3.0.0`);
    expect(parseOfficials(`${old}, ${v3}`)).toEqual([
      { id: 'official', label: '2.8.2', bin: old },
      { id: 'official-3.0.0', label: '3.0.0', bin: v3 },
    ]);
  });

  it('takes a label given as label=path, and refuses duplicate or malformed labels', () => {
    expect(parseOfficials('v3=/opt/x/registry,2.8=/usr/bin/docker-registry').map((o) => [o.id, o.label, o.bin])).toEqual([
      ['official', 'v3', '/opt/x/registry'],
      ['official-2.8', '2.8', '/usr/bin/docker-registry'],
    ]);
    expect(() => parseOfficials('a=/x,a=/y')).toThrow(/two contenders labelled "a"/);
    expect(() => parseOfficials('a b=/x')).toThrow(/label "a b"/);
    expect(() => parseOfficials(' , ')).toThrow(/names no executable/);
  });

  it("gives the scaling table a column and targets per official in the samples, the first's first", () => {
    const sample = (who: ScaleSample['who'], catalog: number): ScaleSample => ({ size: 100_000, who, round: 0, values: { catalog_s: catalog } });
    const samples = [sample('official-3.0.0', 0.46), sample('ours', 0.61), sample('official', 0.28)];
    expect(officialsIn(samples)).toEqual(['official', 'official-3.0.0']);
    const table = formatScaleReport(samples);
    expect(table.split('\n')[0]).toMatch(/^\| measure \| unit \| 100k ours \| 100k official \S+ \| 100k official 3\.0\.0 \|$/);
    expect(table).toMatch(/\| catalog walk, n=1000 pages \| s \| 0\.61 \| 0\.28 \| 0\.46 \|/);
    expect(table).toMatch(/\| catalog walk ours\/official 3\.0\.0 \| 100k \| 1\.326 \| <= 0\.5 \| MISS \|/);
  });
});
