'use strict';
// rcluster's worker hook (lib/worker.js) in every worker, and what comes
// back from it: heartbeats (for the watchdog and the metrics) and
// cluster.worker.ready() (for readiness 'ready').

const path = require('node:path');
const { resolveHeartbeat } = require('./validate');
const { kHeartbeat } = require('./keys');

const WORKER_HOOK = path.join(__dirname, '..', 'worker.js');
// NODE_OPTIONS quotes as a shell would: a path with spaces stays one word.
const HOOK_OPTION = `--require "${WORKER_HOOK.replace(/["\\]/g, '\\$&')}"`;

function createHook(engine) {
  let heartbeat = null;
  let watchdogOn = false;

  function configure(settings) {
    heartbeat = resolveHeartbeat(settings.heartbeat);
  }

  // What a new worker's environment needs on top of `env`: the hook, the
  // heartbeat interval.
  // Through NODE_OPTIONS rather than execArgv, so that the worker's
  // process.execArgv stays Node's.
  function spawnEnv(env) {
    const options = env.NODE_OPTIONS ? `${env.NODE_OPTIONS} ${HOOK_OPTION}` : HOOK_OPTION;
    return heartbeat ? { NODE_OPTIONS: options, RCLUSTER_HEARTBEAT_MS: String(heartbeat.interval) } : { NODE_OPTIONS: options };
  }

  // A worker was forked (so the engine runs): turn its watchdog on once.
  function onFork() {
    if (heartbeat && !watchdogOn) {
      watchdogOn = true;
      engine.watchdog(heartbeat.timeout, heartbeat.grace);
    }
  }

  function onMessage(worker, msg) {
    if (msg.act === 'heartbeat') {
      worker[kHeartbeat] = { rss: msg.rss, eventLoopDelayMs: msg.eventLoopDelayMs, at: Date.now() };
    } else if (msg.act === 'ready') {
      worker.emit('ready');
    }
  }

  return { configure, spawnEnv, onFork, onMessage };
}

module.exports = { createHook };
