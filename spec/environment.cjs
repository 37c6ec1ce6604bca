// The jest environment of the specs: Node's, and a check when a spec file is done that it left no
// handle open that keeps a process alive (a server, a socket, a child process, a worker thread):
// one left open keeps the test worker from exiting ("a worker process has failed to exit
// gracefully") and hides which file leaked. Such a file fails, naming the kinds left open.
const { TestEnvironment } = require('jest-environment-node');

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

class SpecEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    this.testPath = context.testPath;
  }

  async setup() {
    this.baseline = counts();
    await super.setup();
  }

  async teardown() {
    await super.teardown();
    // Closing sockets and exiting processes take a moment to be reported gone.
    let left = extra(counts(), this.baseline);
    for (let i = 0; i < 50 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = extra(counts(), this.baseline);
    }
    if (left.length > 0) throw new Error(`${this.testPath} left open: ${left.join(', ')} (every test closes what it opens)`);
  }
}

module.exports = SpecEnvironment;
