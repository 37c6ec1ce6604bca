/**
 * Everything the bench starts (processes, temporary directories) registers how to undo it here, so
 * a normal end, a failure and Ctrl-C all leave nothing behind.
 */

type Undo = () => Promise<void> | void;

const undos = new Set<Undo>();
let running: Promise<void> | undefined;

/** Registers `undo` to run at clean-up; returns a function that runs it now and unregisters it. */
export function onCleanup(undo: Undo): () => Promise<void> {
  undos.add(undo);
  return async () => {
    if (!undos.delete(undo)) return;
    await undo();
  };
}

/** Runs every registered undo, newest first; errors are reported and do not stop the others. */
export function cleanupAll(): Promise<void> {
  running ??= (async () => {
    for (const undo of [...undos].reverse()) {
      undos.delete(undo);
      try {
        await undo();
      } catch (err) {
        process.stderr.write(`bench: clean-up failed: ${(err as Error).message}\n`);
      }
    }
  })();
  return running;
}

/** On SIGINT/SIGTERM: clean up, then exit 130/143. */
export function installSignalHandlers(): void {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, cleaning up...\n`);
      const force = setTimeout(() => process.exit(code), 15_000);
      force.unref();
      void cleanupAll().finally(() => process.exit(code));
    });
  }
}
