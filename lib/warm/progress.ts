/**
 * What `registry warm` shows while it works: on a terminal, one progress bar per blob being
 * fetched, redrawn in place; otherwise plain lines, one per event, for logs.
 */
import { formatBytes as humanBytes } from '../config/size.js';

/** Receives the warm-up's events. */
export interface WarmProgress {
  /** A line for the record (a manifest resolved, a reference failed). */
  note(line: string): void;
  /** A blob started; `total` when known. */
  start(id: string, label: string, total: number | undefined): void;
  /** More bytes of a blob arrived. */
  advance(id: string, bytes: number): void;
  /** A blob is done: `fetched` from the upstream, `cached` already, or `failed`. */
  finish(id: string, outcome: 'fetched' | 'cached' | 'failed', detail?: string): void;
  /** Stops redrawing (before the summary). */
  close(): void;
}

/** Plain lines (not a terminal). */
export function lineProgress(out: NodeJS.WritableStream): WarmProgress {
  const sizes = new Map<string, { label: string; bytes: number }>();
  return {
    note: (line) => out.write(`${line}\n`),
    start: (id, label) => sizes.set(id, { label, bytes: 0 }),
    advance: (id, bytes) => {
      const s = sizes.get(id);
      if (s) s.bytes += bytes;
    },
    finish: (id, outcome, detail) => {
      const s = sizes.get(id);
      sizes.delete(id);
      out.write(`blob ${s?.label ?? id} ${humanBytes(s?.bytes ?? 0)} ${outcome}${detail ? `: ${detail}` : ''}\n`);
    },
    close: () => undefined,
  };
}

const BAR = 24;

/** Progress bars redrawn in place with ANSI escapes (a terminal). */
export function terminalProgress(out: NodeJS.WritableStream & { columns?: number }): WarmProgress {
  const active = new Map<string, { label: string; bytes: number; total?: number }>();
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  const bar = (done: number, total: number | undefined): string => {
    if (!total) return `[${'?'.repeat(BAR)}]`;
    const filled = Math.min(BAR, Math.round((BAR * done) / total));
    return `[${'='.repeat(filled)}${' '.repeat(BAR - filled)}] ${String(Math.floor((100 * done) / total)).padStart(3)}%`;
  };
  const redraw = (): void => {
    // Up over the previous bars, clearing each line.
    let text = drawn > 0 ? `\x1b[${drawn}A` : '';
    const width = Math.max(40, (out.columns ?? 100) - 1);
    for (const a of active.values()) {
      const line = `${a.label} ${bar(a.bytes, a.total)} ${humanBytes(a.bytes)}${a.total ? ` / ${humanBytes(a.total)}` : ''}`;
      text += `\x1b[2K${line.slice(0, width)}\n`;
    }
    for (let i = active.size; i < drawn; i++) text += '\x1b[2K\n';
    if (drawn > active.size) text += `\x1b[${drawn - active.size}A`;
    drawn = active.size;
    out.write(text);
  };
  const above = (line: string): void => {
    // A permanent line goes above the bars.
    let text = drawn > 0 ? `\x1b[${drawn}A` : '';
    text += `\x1b[2K${line}\n`;
    drawn = 0;
    out.write(text);
    redraw();
  };
  const schedule = (): void => {
    timer ??= setTimeout(() => {
      timer = undefined;
      redraw();
    }, 100);
  };
  return {
    note: above,
    start: (id, label, total) => {
      active.set(id, { label, bytes: 0, total });
      schedule();
    },
    advance: (id, bytes) => {
      const a = active.get(id);
      if (a) a.bytes += bytes;
      schedule();
    },
    finish: (id, outcome, detail) => {
      const a = active.get(id);
      active.delete(id);
      above(`blob ${a?.label ?? id} ${humanBytes(a?.bytes ?? 0)} ${outcome}${detail ? `: ${detail}` : ''}`);
    },
    close: () => {
      clearTimeout(timer);
      timer = undefined;
      active.clear();
      redraw();
    },
  };
}
