/**
 * What `registry warm` shows while it works: on a terminal, one progress bar per blob being
 * fetched, redrawn in place with ANSI escapes, below the lines already written; otherwise plain
 * lines only, one per event, for logs.
 */
import { formatBytes } from '../config/size.js';

/** Receives the warm-up's events. */
export interface WarmProgress {
  /** A line for the record: a manifest resolved, a blob done, a reference failed. */
  line(text: string): void;
  /** A blob transfer from the upstream started; `total` when its size is known. */
  start(id: string, label: string, total: number | undefined): void;
  /** More bytes of a transfer arrived. */
  advance(id: string, bytes: number): void;
  /** A transfer ended (its outcome comes as a `line`). */
  end(id: string): void;
  /** Stops redrawing and removes the bars (before the summary). */
  close(): void;
}

/** Where progress is written: a stream, maybe a terminal. */
export type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** Bars on a terminal, plain lines otherwise. */
export function progressFor(out: ProgressStream): WarmProgress {
  return out.isTTY ? terminalProgress(out) : lineProgress(out);
}

/** Plain lines (not a terminal): transfers are not shown as they run. */
function lineProgress(out: NodeJS.WritableStream): WarmProgress {
  return {
    line: (text) => out.write(`${text}\n`),
    start: () => undefined,
    advance: () => undefined,
    end: () => undefined,
    close: () => undefined,
  };
}

const BAR = 30;
/** Least time between two redraws of the bars. */
const REDRAW_MS = 100;

/** One transfer's bar: `sha256:0123456789ab [=========>      ]  61%  1.2 MiB / 2.0 MiB`. */
export function formatBar(label: string, done: number, total: number | undefined): string {
  if (!total) return `${label} [${'-'.repeat(BAR)}]  ${formatBytes(done)}`;
  const ratio = Math.min(1, done / total);
  const filled = Math.floor(BAR * ratio);
  const body = filled >= BAR ? '='.repeat(BAR) : `${'='.repeat(filled)}>${' '.repeat(BAR - filled - 1)}`;
  return `${label} [${body}] ${String(Math.floor(100 * ratio)).padStart(3)}%  ${formatBytes(done)} / ${formatBytes(total)}`;
}

/**
 * Progress bars redrawn in place (a terminal). The bars are the last lines on the screen; each
 * redraw moves the cursor up over them, clears to the end of the screen, writes the lines logged
 * since, then the bars again. Lines are cut to the terminal's width so that none wraps (a wrapped
 * line would throw the count of lines to move up over).
 */
function terminalProgress(out: ProgressStream): WarmProgress {
  const active = new Map<string, { label: string; done: number; total?: number }>();
  const pending: string[] = [];
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const fit = (text: string): string => text.slice(0, Math.max(20, (out.columns ?? 80) - 1));
  const redraw = (): void => {
    clearTimeout(timer);
    timer = undefined;
    let text = drawn > 0 ? `\x1b[${drawn}A\r` : '';
    text += '\x1b[J';
    for (const l of pending.splice(0)) text += `${l}\n`;
    for (const a of active.values()) text += `${fit(formatBar(a.label, a.done, a.total))}\n`;
    drawn = active.size;
    out.write(text);
  };
  const soon = (): void => {
    if (!closed) timer ??= setTimeout(redraw, REDRAW_MS);
  };
  return {
    line: (text) => {
      if (closed) return void out.write(`${text}\n`);
      pending.push(text);
      redraw();
    },
    start: (id, label, total) => {
      active.set(id, { label, done: 0, total });
      if (!closed) redraw();
    },
    advance: (id, bytes) => {
      const a = active.get(id);
      if (a) a.done += bytes;
      soon();
    },
    end: (id) => {
      active.delete(id);
      soon();
    },
    close: () => {
      if (closed) return;
      active.clear();
      redraw();
      closed = true;
    },
  };
}
