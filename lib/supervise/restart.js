'use strict';
// Auto-restart with crash-loop protection: a worker that crashes (not one
// that left on purpose) is replaced after the backoff the policy says; past
// the crash-loop limit 'restartLimit' is emitted instead. The policy, its
// defaults and its state live here, for both engines.
//
// Quick deaths (uptime under minUptime) grow the delay exponentially along
// one worker's line of replacements; a worker that lived long enough resets
// it. More than maxRestarts restarts inside `window` (over the whole
// cluster) is a crash loop: restarting stops.

const { resolveRestart } = require('./validate');
const { kEnv, kForkedAt, kStreak, kRestarts, kCandidate, kSuccessor } = require('./keys');

const DEFAULT_POLICY = Object.freeze({
  maxRestarts: 10,
  window: 60000,
  minUptime: 1000,
  backoffInitial: 100,
  backoffMax: 15000,
  backoffFactor: 2,
});

/**
 * The crash-loop bookkeeping of one cluster: `onCrash(now, uptime, streak)`
 * says whether to restart a worker that crashed at `now` after `uptime` ms,
 * whose line had `streak` quick deaths before it: `{ restart: true, delay,
 * streak }` (the streak goes to the replacement) or `{ restart: false }`.
 */
function crashTracker(options) {
  const policy = { ...DEFAULT_POLICY, ...options };
  const recent = []; // restart times inside the window, oldest first
  function onCrash(now, uptime, streak) {
    while (recent.length > 0 && now - recent[0] >= policy.window) recent.shift();
    if (recent.length >= policy.maxRestarts) return { restart: false };
    recent.push(now);
    if (uptime >= policy.minUptime) return { restart: true, delay: 0, streak: 0 };
    const next = streak + 1;
    const delay = policy.backoffInitial * policy.backoffFactor ** (next - 1);
    return { restart: true, delay: Math.min(delay, policy.backoffMax), streak: next };
  }
  return { policy, onCrash };
}

function createRestart(cluster) {
  let tracker = null; // null: restart is off
  let paused = false; // a shutdown under way: no replacements
  let total = 0;
  const timers = new Set();

  // Settings given (setupPrimary with options): a new crash-loop window.
  function configure(settings) {
    const policy = resolveRestart(settings.restart);
    tracker = policy ? crashTracker(policy) : null;
  }

  function onFork(worker, env) {
    worker[kEnv] = env;
    worker[kForkedAt] = Date.now();
    worker[kRestarts] = 0;
    worker[kStreak] = 0;
  }

  // After Node's 'exit' events: replace a crashed worker when restart is on.
  // Not a reload's replacement that never became ready (the reload fails
  // instead), nor a worker a reload is replacing or has replaced.
  function onExit(worker, code, signal) {
    if (!tracker || worker.exitedAfterDisconnect || paused) return;
    if (worker[kCandidate] || worker[kSuccessor]) return;
    const now = Date.now();
    const d = tracker.onCrash(now, now - worker[kForkedAt], worker[kStreak]);
    if (!d.restart) {
      const { maxRestarts, window } = tracker.policy;
      cluster.emit('restartLimit', worker, { code, signal, maxRestarts, window });
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      const fresh = cluster.fork(worker[kEnv]);
      total++;
      fresh[kStreak] = d.streak;
      fresh[kRestarts] = worker[kRestarts] + 1;
      cluster.emit('restart', fresh, worker, { code, signal, delay: d.delay });
    }, d.delay);
    timers.add(timer);
  }

  // A shutdown: no replacement forked until it is over (`resume()`).
  function pause() {
    paused = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
  }

  function resume() {
    paused = false;
  }

  return { configure, onFork, onExit, pause, resume, total: () => total };
}

module.exports = { createRestart, crashTracker, DEFAULT_POLICY };
