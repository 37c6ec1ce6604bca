// jest's ESM runtime builds its synthetic `node:process` module from the keys `process` has when a
// suite's module graph is linked. signal-exit (used by proper-lockfile) adds keys to `process`:
// `__signal_exit_emitter__` when loaded, `emit` and `reallyExit` when a handler is first registered.
// If that happens while a graph is being linked, the synthetic module refuses the new export.
// Loading it and registering (then removing) one handler here, before any suite links, adds every
// such key up front.
const onExit = require('signal-exit');
onExit(() => undefined)();
