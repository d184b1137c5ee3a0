'use strict';
// setupPrimary({ reapOrphans }): a primary that is a container's PID 1 (or a
// child subreaper) adopts every orphan in it, and unreaped they stay zombies
// until the PID limit is hit. With reapOrphans on ('auto': only when PID 1 or
// a child subreaper, as the rcluster command sets it), the primary reaps
// them, as tini does, on SIGCHLD and once a second — never a worker (the
// engine reaps those) nor a child the app's own code spawned through
// child_process (libuv reaps those by pid; their pids are kept here from
// spawn to 'exit'). Needs the native engine (waitpid of a given pid).

const { ChildProcess } = require('node:child_process');

const appChildren = new Set();
let tracking = false;

// Every child spawned through child_process in this process, until it exits.
function trackAppChildren() {
  if (tracking) return;
  tracking = true;
  const spawn = ChildProcess.prototype.spawn;
  ChildProcess.prototype.spawn = function trackedSpawn() {
    const r = Reflect.apply(spawn, this, arguments);
    const { pid } = this;
    if (pid !== undefined) {
      appChildren.add(pid);
      this.once('exit', () => appChildren.delete(pid));
    }
    return r;
  };
}

/** `engine.reapOrphans(keep)` and `engine.childSubreaper()` where the engine has them; `live`: workers. */
function createReaper(engine) {
  let on = false;
  let warned = false;
  function reap() {
    const keep = [...appChildren];
    for (const w of engine.live.values()) if (w.process.pid !== undefined) keep.push(w.process.pid);
    engine.reapOrphans(keep);
  }
  function configure(settings) {
    const want = settings.reapOrphans;
    if (on || warned || !want) return;
    if (want === 'auto' && process.pid !== 1 && !(engine.childSubreaper && engine.childSubreaper())) return;
    if (!engine.reapOrphans) {
      warned = true;
      process.emitWarning('reapOrphans needs rcluster\'s native engine; orphans are left to the container\'s init',
        { code: 'RCLUSTER_NO_REAPER' });
      return;
    }
    on = true;
    trackAppChildren();
    process.on('SIGCHLD', reap);
    setInterval(reap, 1000).unref();
  }
  return { configure };
}

module.exports = { createReaper };
