/**
 * `node build-bench/bench/startup-phases.js <config.yml> [runs]`: where our registry's start-up
 * time goes before it serves, each run in a fresh process: Node's own boot, loading the module
 * graph (configuration modules, then the rest of `registry serve`'s), reading the configuration,
 * `startRegistry` up to listening, and, in separate runs, the share of it that is `createServices`
 * (temporary-file clean-up, the expiry schedule, the size cap's measure: the work that can grow
 * with the cache). Wall and CPU milliseconds per phase, the median over runs. Point it at a copy
 * of a cache to measure that cache (it cleans `.tmp` and runs due expiries, as a start does).
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PHASES = ['boot', 'importConfig', 'importServer', 'loadConfig', 'startRegistry'] as const;
type Phase = (typeof PHASES)[number];

/**
 * One run, in this process: prints `{phase: [wallMs, cpuMs]}` as JSON. With `servicesOnly`, the
 * last phase is `createServices` alone (its share of `startRegistry`, in a process of its own so
 * that one run's module and state caches do not make the other's cheaper).
 */
async function measureOnce(configPath: string, servicesOnly: boolean): Promise<void> {
  const out = {} as Record<Phase, [number, number]>;
  const cpu = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  out.boot = [process.uptime() * 1000, cpu()];
  let wall = performance.now();
  let used = cpu();
  const mark = (phase: Phase): void => {
    out[phase] = [performance.now() - wall, cpu() - used];
    wall = performance.now();
    used = cpu();
  };
  const dist = new URL('../../dist/', import.meta.url);
  const { loadConfig } = (await import(new URL('config/load.js', dist).href)) as typeof import('../lib/config/load.js');
  mark('importConfig');
  const { createLogger } = (await import(new URL('log/logger.js', dist).href)) as typeof import('../lib/log/logger.js');
  const { startRegistry } = (await import(new URL('server.js', dist).href)) as typeof import('../lib/server.js');
  const { createServices } = (await import(new URL('services/registry-services.js', dist).href)) as typeof import('../lib/services/registry-services.js');
  mark('importServer');
  const { config } = loadConfig({ path: configPath, env: process.env });
  const logger = createLogger({ ...config.log, level: 'error' });
  mark('loadConfig');
  if (servicesOnly) {
    const services = await createServices(config, logger);
    mark('startRegistry');
    await services.close();
  } else {
    const registry = await startRegistry(config, logger);
    mark('startRegistry');
    await registry.close();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const [configPath, runsArg, child] = process.argv.slice(2);
if (!configPath) {
  process.stderr.write('usage: node build-bench/bench/startup-phases.js <config.yml> [runs]\n');
  process.exit(2);
}
if (child === '--once' || child === '--services') {
  await measureOnce(configPath, child === '--services');
  process.exit(0);
}
const runs = Number(runsArg ?? 5);
const run = (mode: string): Record<Phase, [number, number]> => {
  const text = execFileSync(process.execPath, [fileURLToPath(import.meta.url), configPath, '1', mode], { encoding: 'utf8' });
  return JSON.parse(text.trim().split('\n').pop()!) as Record<Phase, [number, number]>;
};
const samples: Array<Record<Phase, [number, number]>> = [];
const services: Array<[number, number]> = [];
for (let i = 0; i < runs; i++) {
  samples.push(run('--once'));
  services.push(run('--services').startRegistry);
}
process.stdout.write(`start-up phases, median of ${runs} runs (wall ms / CPU ms):\n`);
let wall = 0;
let cpu = 0;
for (const p of PHASES) {
  const w = median(samples.map((s) => s[p][0]));
  const c = median(samples.map((s) => s[p][1]));
  wall += w;
  cpu += c;
  process.stdout.write(`  ${p.padEnd(15)} ${w.toFixed(0).padStart(6)} / ${c.toFixed(0).padStart(6)}\n`);
}
process.stdout.write(`  ${'total'.padEnd(15)} ${wall.toFixed(0).padStart(6)} / ${cpu.toFixed(0).padStart(6)}\n`);
const sw = median(services.map((x) => x[0]));
const sc = median(services.map((x) => x[1]));
process.stdout.write(`  of startRegistry, createServices alone (separate runs): ${sw.toFixed(0)} / ${sc.toFixed(0)}\n`);
