/** The machine and tool versions a run was measured on, for the report. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { SKOPEO_BIN } from '../spec/helpers/interop.js';
import { officials, officialVersion } from './officials.js';
import { NGINX_BIN } from './servers.js';

/** What `describeMachine` reports. */
export type Machine = Record<string, string>;

function version(cmd: string, args: string[]): string {
  try {
    const r = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return r.trim().split('\n')[0]!;
  } catch (err) {
    // nginx -v and wrk -v print to stderr (wrk exits 1).
    const e = err as { stderr?: string; stdout?: string };
    return `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n')[0] ?? 'unknown';
  }
}

/** nproc, CPU model, RAM, kernel, node and tool versions (each official contender's too). */
export function describeMachine(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const nginx = execFileSync('sh', ['-c', `${NGINX_BIN} -v 2>&1`], { encoding: 'utf8' }).trim();
  return {
    nproc: String(os.availableParallelism()),
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? 'unknown',
    ram: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: os.release(),
    node: process.version,
    // One entry per official contender, under its id (`official`, `official-<label>`).
    ...Object.fromEntries(officials().map((o) => [o.id, officialVersion(o.bin)])),
    nginx: nginx.replace(/^nginx version: /, ''),
    wrk: version('/usr/bin/wrk', ['-v']).split(' [')[0]!,
    skopeo: version(SKOPEO_BIN, ['--version']),
    loadavg_at_start: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
  };
}
