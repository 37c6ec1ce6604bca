// The jest environment of the specs: Node's, and a check when a spec file is done that it left no
// handle open that keeps a process alive (a server, a socket, a child process, a worker thread):
// one left open keeps the test worker from exiting ("a worker process has failed to exit
// gracefully") and hides which file leaked. Such a file fails, naming the kinds left open, and
// the timers its code set (setTimeout, setInterval) that are still pending and keep the process
// alive, with where each was set. The processes the file started (spec/helpers/children.ts) and
// left running are killed first and named. It also fails a file whose code dropped a file handle without
// closing it: Node 26 throws when the garbage collector closes one (an uncaught error, which in the
// mirror ends the process), so each file's end collects garbage and looks for such a close.
const { TestEnvironment } = require('jest-environment-node');
const v8 = require('node:v8');
const vm = require('node:vm');

// The collector on demand, whatever flags the worker was started with.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc');

/** File handles closed by the collector since the last look (Node 20/24 warn, Node 26 throws). */
const droppedHandles = [];
process.on('warning', (w) => {
  if (/^Closing file descriptor \d+ on garbage collection/.test(w.message)) droppedHandles.push(w.message);
});
/** Node 26's error for such a close, raised where nothing can catch it. */
function isDroppedHandle(err) {
  return err?.code === 'ERR_INVALID_STATE' && /FileHandle object was closed during garbage collection/.test(err.message);
}

// In a test worker (a child of jest, with its IPC channel), once jest has asked it to end and
// nothing holds its event loop any more: exit now, instead of tearing down the JavaScript heap
// page by page on the way out, which took seconds on a loaded machine for a worker that had run
// many files (jest force-exits a worker that is not gone 500 ms after asked). A handle left open
// still keeps this from firing, so leaks still show (here, per file, and in spec/exit-reporter.js).
if (typeof process.send === 'function') process.once('beforeExit', () => process.exit());

/** The kinds of handles checked (timers are not: jest's own come and go). */
const WATCHED = new Set(['ProcessWrap', 'MessagePort', 'Worker', 'TCPServerWrap', 'TCPWrap', 'TLSWrap', 'PipeServerWrap']);

function counts() {
  const n = new Map();
  for (const r of process.getActiveResourcesInfo()) if (WATCHED.has(r)) n.set(r, (n.get(r) ?? 0) + 1);
  return n;
}

function extra(now, base) {
  return [...now].filter(([k, v]) => v > (base.get(k) ?? 0)).map(([k, v]) => `${v - (base.get(k) ?? 0)} ${k}`);
}

/** Timers still pending that keep the process alive, as `at` lines of where they were set. */
function pendingTimers(timers) {
  const out = [];
  for (const [timer, origin] of timers) {
    // `_destroyed`: fired (a timeout) or cleared; an unref'd one does not hold the process.
    if (timer._destroyed || !timer.hasRef()) continue;
    const at = (origin.stack ?? '')
      .split('\n')
      .slice(2, 5)
      .map((l) => l.trim())
      .join(' < ');
    out.push(`${timer._repeat ? 'setInterval' : 'setTimeout'}(${timer._idleTimeout} ms) ${at}`);
  }
  return out;
}

class SpecEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    this.testPath = context.testPath;
    // Every timer the suite's code sets through the globals, with where it was set.
    this.timers = new Map();
    this.failures = [];
    for (const name of ['setTimeout', 'setInterval']) {
      const original = this.global[name];
      const timers = this.timers;
      this.global[name] = function (...args) {
        const timer = original.apply(this, args);
        if (timer && typeof timer.hasRef === 'function') {
          // Forget those done with, now and then, so a long file does not hold them all.
          if (timers.size >= 4096) for (const t of timers.keys()) if (t._destroyed) timers.delete(t);
          timers.set(timer, new Error('set here'));
        }
        return timer;
      };
      // util.promisify(setTimeout) and the like still find the promise form.
      Object.assign(this.global[name], original);
    }
  }

  /**
   * Notes the file's failed tests and hooks: a teardown that throws replaces the file's results
   * with its own error, so the leak's message carries them (a failure seen once in CI is then
   * explained without a rerun).
   */
  handleTestEvent(event) {
    // A test's errors are [error, asyncError] pairs; the first few lines of the error's stack.
    const first = (e) => {
      const error = Array.isArray(e) ? (e[0] ?? e[1]) : e;
      return String(error?.stack ?? error)
        .split('\n')
        .slice(0, 6)
        .join('\n    ');
    };
    if (event.name === 'test_done' && event.test.errors.length > 0) {
      const names = [];
      for (let b = event.test; b && b.parent; b = b.parent) names.unshift(b.name);
      this.failures.push(`${names.join(' > ')}:\n    ${event.test.errors.map(first).join('\n    ')}`);
    }
    if (event.name === 'hook_failure' && (event.hook.type === 'beforeAll' || event.hook.type === 'afterAll')) {
      this.failures.push(`${event.hook.type}:\n    ${first(event.error)}`);
    }
  }

  async setup() {
    this.baseline = counts();
    await super.setup();
  }

  /** Collects the file's garbage: the file handles it dropped open, as messages. */
  async droppedFileHandles() {
    const thrown = [];
    const onError = (err) => {
      if (!isDroppedHandle(err)) throw err;
      thrown.push(err.message);
    };
    process.on('uncaughtException', onError);
    try {
      // Twice, a moment apart: a handle's close is reported after the collection that found it.
      for (let i = 0; i < 2; i++) {
        collectGarbage();
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      process.off('uncaughtException', onError);
    }
    return [...droppedHandles.splice(0), ...thrown];
  }

  /**
   * Kills the processes the file started (spec/helpers/children.ts) that are still alive, and
   * names them: a test that failed half-way may start one after its `afterEach` has run.
   */
  async killLeftRunning() {
    const children = this.global.__specChildren;
    if (!children) return [];
    const left = [...children.entries()].filter(([child]) => child.alive());
    for (const [, { kill }] of left) kill();
    await Promise.all(left.map(([child]) => child.exited));
    return left.map(([child, { command }]) => `pid ${child.pid}: ${command.slice(0, 120)}`);
  }

  async teardown() {
    const running = await this.killLeftRunning();
    await super.teardown();
    const dropped = await this.droppedFileHandles();
    // Closing sockets and exiting processes take a moment to be reported gone.
    let left = extra(counts(), this.baseline);
    for (let i = 0; i < 50 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = extra(counts(), this.baseline);
    }
    let timers = pendingTimers(this.timers);
    for (let i = 0; i < 50 && timers.length > 0 && left.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      timers = pendingTimers(this.timers);
    }
    this.timers.clear();
    if (timers.length > 0) left.push(`${timers.length} pending timer(s): ${timers.join('; ')}`);
    if (running.length > 0) left.push(`${running.length} process(es) still running, killed now (${running.join('; ')})`);
    if (dropped.length > 0) left.push(`${dropped.length} file handle(s) never closed (${dropped.join('; ')})`);
    if (left.length > 0) {
      const failed = this.failures.length > 0 ? `\nthe file's failures (their results are replaced by this one):\n  ${this.failures.join('\n  ')}` : '';
      throw new Error(`${this.testPath} left open: ${left.join(', ')} (every test closes what it opens)${failed}`);
    }
  }
}

module.exports = SpecEnvironment;
