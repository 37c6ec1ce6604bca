#!/usr/bin/env node
// The suite's stability check: runs the whole suite (`npm test`) N times from a fresh clone of HEAD
// (`npm ci` once), the second half of the runs with a CPU hog (`yes`) on one core, and reports every
// test that failed even once, with the run, whether the hog ran, and the time of each run. Exits 1
// when anything failed. Usage: `npm run test:stability -- --runs 5` (default 5; `--keep` keeps the
// clone). Heavy: on a shared machine, wrap it in the machine's lock for whole-suite runs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const runsArg = args.indexOf('--runs');
const runs = runsArg >= 0 ? Number(args[runsArg + 1]) : 5;
const keep = args.includes('--keep');
if (!Number.isInteger(runs) || runs < 1) {
  console.error('usage: .ci/stability.mjs [--runs N] [--keep]');
  process.exit(2);
}

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const head = git(repo, 'rev-parse', 'HEAD').trim();
const work = mkdtempSync(join(tmpdir(), 'stability-'));
const clone = join(work, 'clone');
let hog;

function git(cwd, ...a) {
  const r = spawnSync('git', ['-C', cwd, ...a], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ${a.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Runs `command` in the clone with the output shown; resolves with its exit code. */
function run(command, commandArgs) {
  return new Promise((done) => {
    const child = spawn(command, commandArgs, { cwd: clone, stdio: 'inherit' });
    child.once('exit', (code, signal) => done(code ?? (signal ? 128 : 1)));
  });
}

function stopHog() {
  if (hog && hog.exitCode === null && hog.signalCode === null) hog.kill('SIGKILL');
  hog = undefined;
}

function cleanUp() {
  stopHog();
  if (!keep) rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    cleanUp();
    process.exit(130);
  });
}

const minutes = (ms) => `${(ms / 60_000).toFixed(1)} min`;

async function main() {
  console.log(`stability: ${runs} run(s) of the whole suite at ${head.slice(0, 12)}, in ${clone}`);
  git(repo, 'clone', '--quiet', '--no-checkout', repo, clone);
  git(clone, 'checkout', '--quiet', '--detach', head);
  if ((await run('npm', ['ci'])) !== 0) throw new Error('npm ci failed in the clone');
  /** test name → the runs it failed in */
  const failed = new Map();
  const results = [];
  const started = Date.now();
  for (let i = 1; i <= runs; i++) {
    const loaded = i > Math.floor(runs / 2);
    if (loaded) hog = spawn('sh', ['-c', 'exec yes > /dev/null'], { stdio: 'ignore' });
    const out = join(work, `run-${i}.json`);
    const t = Date.now();
    console.log(`\n=== run ${i}/${runs}${loaded ? ' (with a CPU hog on one core)' : ''}`);
    const code = await run('npm', ['test', '--', '--json', `--outputFile=${out}`]);
    stopHog();
    const ms = Date.now() - t;
    let failures = 0;
    let tests = 0;
    if (existsSync(out)) {
      const report = JSON.parse(readFileSync(out, 'utf8'));
      tests = report.numTotalTests;
      for (const file of report.testResults) {
        const name = file.name.startsWith(clone) ? file.name.slice(clone.length + 1) : file.name;
        const bad = file.assertionResults.filter((a) => a.status === 'failed');
        // A file that failed outside its tests (a hook, an import): the file itself is the failure.
        if (bad.length === 0 && file.status === 'failed')
          bad.push({ fullName: `(the file: ${(file.message ?? '').split('\n').find((l) => l.trim()) ?? 'failed'})` });
        for (const a of bad) {
          const key = `${name} › ${a.fullName}`;
          failed.set(key, [...(failed.get(key) ?? []), `${i}${loaded ? ' (hog)' : ''}`]);
          failures++;
        }
      }
    }
    // A failure after the tests (jest's global teardown: a process left alive) or before them.
    if (code !== 0 && failures === 0) {
      const key = `(run exited ${code} with no failed test: set-up, global teardown or an open handle; see its output)`;
      failed.set(key, [...(failed.get(key) ?? []), `${i}${loaded ? ' (hog)' : ''}`]);
    }
    results.push({ i, loaded, code, ms, tests, failures });
  }
  console.log(`\n=== stability: ${runs} run(s) in ${minutes(Date.now() - started)}`);
  for (const r of results) console.log(`run ${r.i}${r.loaded ? ' (hog)' : ''}: ${r.tests} tests, ${r.failures} failed, exit ${r.code}, ${minutes(r.ms)}`);
  if (failed.size === 0) {
    console.log(`no test failed in ${runs} run(s)`);
    return 0;
  }
  console.log(`${failed.size} test(s) failed at least once:`);
  for (const [name, inRuns] of failed) console.log(`- ${name}: run(s) ${inRuns.join(', ')}`);
  return 1;
}

main()
  .then((code) => {
    cleanUp();
    process.exit(code);
  })
  .catch((err) => {
    console.error(err);
    cleanUp();
    process.exit(1);
  });
