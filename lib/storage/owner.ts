/**
 * Who a process is, in a form another process can check: the host name, the pid, the process's
 * start time (Linux: `starttime` of `/proc/<pid>/stat`, so that a pid the kernel has handed to a new
 * process is not taken for the old one) and a scope naming the kernel boot and pid namespace it
 * ran in (two containers with the same host name, or a host after a reboot, are not "this host").
 * Locks and temporary directories carry it; a holder is *provably dead* only when it ran in this
 * scope and its pid is gone, belongs to a process started at another time, or is a zombie. Anything
 * else (another host, another container, a platform without `/proc`) is left to the stale-time rules.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';

/** A process as recorded by the holder of a lock or a temporary directory. */
export interface ProcessOwner {
  /** The host name, made safe for file names (no `-`). */
  readonly host: string;
  readonly pid: number;
  /** Clock ticks from boot to the process's start (`/proc/<pid>/stat` field 22); empty when unknown. */
  readonly start: string;
  /** 8 hex digits of the boot id and pid namespace; empty when unknown. */
  readonly scope: string;
}

/** A process's state and start time from `/proc/<pid>/stat`, or undefined when there is no such process. */
async function procStat(pid: number): Promise<{ state: string; start: string } | undefined | 'unknown'> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return existsProc() ? undefined : 'unknown';
    return 'unknown';
  }
  return parseStat(text);
}

/** Fields after the command name (which may hold spaces and parentheses): state is field 3, starttime 22. */
function parseStat(text: string): { state: string; start: string } | 'unknown' {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const start = fields[19];
  return state && start && /^\d+$/.test(start) ? { state, start } : 'unknown';
}

let procMounted: boolean | undefined;
function existsProc(): boolean {
  if (procMounted === undefined) {
    try {
      readFileSync('/proc/self/stat');
      procMounted = true;
    } catch {
      procMounted = false;
    }
  }
  return procMounted;
}

/** The host name as it appears in owners and temporary directory names. */
export function safeHost(): string {
  return hostname().replace(/[^A-Za-z0-9.]/g, '_') || 'host';
}

function readOr(read: () => string): string {
  try {
    return read().trim();
  } catch {
    return '';
  }
}

let self: ProcessOwner | undefined;

/** This process. */
export function thisProcess(): ProcessOwner {
  if (self) return self;
  const stat = readOr(() => readFileSync('/proc/self/stat', 'utf8'));
  const parsed = stat ? parseStat(stat) : 'unknown';
  const boot = readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'));
  const pidns = readOr(() => readlinkSync('/proc/self/ns/pid'));
  const scope = boot && pidns ? createHash('sha256').update(`${boot} ${pidns}`).digest('hex').slice(0, 8) : '';
  self = { host: safeHost(), pid: process.pid, start: parsed === 'unknown' ? '' : parsed.start, scope };
  return self;
}

/** True when `owner` is this very process. */
function isThisProcess(owner: ProcessOwner): boolean {
  const me = thisProcess();
  return owner.host === me.host && owner.pid === me.pid && owner.start === me.start && owner.scope === me.scope;
}

/**
 * True only when `owner` ran on this host, in this boot and pid namespace, and is certainly gone:
 * no process has its pid, or the one that has it started at another time, or it is a zombie.
 */
export async function isProvablyDead(owner: ProcessOwner): Promise<boolean> {
  const me = thisProcess();
  if (owner.host !== me.host || !owner.scope || owner.scope !== me.scope) return false;
  if (isThisProcess(owner)) return false;
  const stat = await procStat(owner.pid);
  if (stat === 'unknown') return false;
  if (stat === undefined) return true;
  // Z: a zombie (exited, not yet reaped); X: dead.
  return stat.state === 'Z' || stat.state === 'X' || (owner.start !== '' && stat.start !== owner.start);
}

/** `<host>-<pid>-<start>-<scope>`: an owner in a file name (host names are made free of `-`). */
export function ownerTag(owner: ProcessOwner = thisProcess()): string {
  return `${owner.host}-${owner.pid}-${owner.start || '0'}-${owner.scope || '0'}`;
}

/**
 * The owner in a name made by `ownerTag` followed by `-<8 hex digits>`; also reads the older
 * `<host>-<pid>-<suffix>` (no start time, no scope: judged by its pid alone, on this host).
 */
export function parseOwnerTag(name: string): { owner: ProcessOwner; legacy: boolean } | undefined {
  let m = /^(.+)-(\d+)-(\d+)-([0-9a-f]{8}|0)-([0-9a-f]{8})$/.exec(name);
  if (m) return { owner: { host: m[1]!, pid: Number(m[2]), start: m[3] === '0' ? '' : m[3]!, scope: m[4] === '0' ? '' : m[4]! }, legacy: false };
  m = /^(.+)-(\d+)-[0-9a-f]{8}$/.exec(name);
  if (m) return { owner: { host: m[1]!, pid: Number(m[2]), start: '', scope: '' }, legacy: true };
  return undefined;
}

/** A recorded owner from JSON, or undefined when it is not one. */
export function parseOwner(value: unknown): ProcessOwner | undefined {
  const o = value as Partial<ProcessOwner> | null;
  if (!o || typeof o.host !== 'string' || !Number.isSafeInteger(o.pid) || typeof o.start !== 'string' || typeof o.scope !== 'string') return undefined;
  return { host: o.host, pid: o.pid!, start: o.start, scope: o.scope };
}

/** Whether a process with `pid` exists here (EPERM: it does, owned by someone else). */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
