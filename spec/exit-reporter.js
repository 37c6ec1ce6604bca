// A jest reporter that fails the run when jest had to force a test worker to exit ("A worker
// process has failed to exit gracefully and has been force exited"). jest only prints that
// warning and exits 0; a worker that does not end by itself within jest's 500 ms either holds a
// handle open (spec/environment.cjs names those per spec file) or took too long to tear itself
// down (see workerIdleMemoryLimit in jest.config.js). jest prints the warning on stderr after the
// last test file and before the run completes, so watching stderr until then sees it.
const WARNING = 'A worker process has failed to exit gracefully';

export default class ExitReporter {
  constructor() {
    this.forced = false;
    const write = process.stderr.write;
    const self = this;
    process.stderr.write = function (chunk, ...rest) {
      if (String(chunk).includes(WARNING)) self.forced = true;
      return write.call(this, chunk, ...rest);
    };
  }

  onRunComplete() {
    if (this.forced) process.stderr.write('exit-reporter: a test worker did not exit by itself (see above); the run fails\n');
  }

  /** jest fails the run when a reporter reports an error. */
  getLastError() {
    return this.forced ? new Error('a test worker was force exited') : undefined;
  }
}
