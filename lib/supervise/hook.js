'use strict';
// The primary's side of rcluster's worker hook (lib/worker-hook.js, loaded
// into every worker): its environment, and what comes back from it:
// heartbeats (for the metrics; the engine's watchdog notes them itself) and
// cluster.worker.ready() (for readiness 'ready'; so does the plain message
// 'ready', as PM2's wait_ready has apps send it with process.send('ready')).

const path = require('node:path');
const { resolveHeartbeat } = require('./validate');
const { kHeartbeat, kConnections } = require('./keys');

const WORKER_HOOK = path.join(__dirname, '..', 'worker-hook.js');
// NODE_OPTIONS quotes as a shell would: a path with spaces stays one word.
const HOOK_OPTION = `--require "${WORKER_HOOK.replace(/["\\]/g, '\\$&')}"`;

function createHook(engine) {
  let heartbeat = null;
  let watchdogOn = false;
  let readyMessage = false;
  let killSignal = null;

  function configure(settings) {
    heartbeat = resolveHeartbeat(settings.heartbeat);
    readyMessage = settings.readiness === 'ready';
    killSignal = settings.killSignal ?? null;
  }

  // What a new worker's environment needs on top of `env`: the hook, the
  // heartbeat interval.
  // Through NODE_OPTIONS rather than execArgv, so that the worker's
  // process.execArgv stays Node's.
  // RCLUSTER_WORKER_KILL_SIGNAL: the signal a leaving worker gets (the hook lets
  // an app without a handler of its own drain, then exit).
  function spawnEnv(env) {
    const out = {
      NODE_OPTIONS: env.NODE_OPTIONS ? `${env.NODE_OPTIONS} ${HOOK_OPTION}` : HOOK_OPTION,
      // The hook puts this back once loaded, so the worker's own child
      // processes do not load it.
      RCLUSTER_NODE_OPTIONS: env.NODE_OPTIONS ?? '',
    };
    if (heartbeat) out.RCLUSTER_HEARTBEAT_MS = String(heartbeat.interval);
    if (killSignal) out.RCLUSTER_WORKER_KILL_SIGNAL = killSignal;
    return out;
  }

  // A worker was forked (so the engine runs): turn its watchdog on once.
  function onFork(worker) {
    if (readyMessage) {
      worker.on('message', (message) => {
        if (message === 'ready') worker.emit('ready');
      });
    }
    if (heartbeat && !watchdogOn) {
      watchdogOn = true;
      engine.watchdog(heartbeat.timeout, heartbeat.grace);
    }
  }

  function onMessage(worker, msg) {
    if (msg.act === 'heartbeat') {
      worker[kHeartbeat] = { rss: msg.rss, eventLoopDelayMs: msg.eventLoopDelayMs, at: Date.now() };
    } else if (msg.act === 'connections') {
      // The portable engine's count (the native engine keeps its own).
      worker[kConnections] = msg.open;
    } else if (msg.act === 'ready') {
      worker.emit('ready');
    }
  }

  return { configure, spawnEnv, onFork, onMessage };
}

module.exports = { createHook };
