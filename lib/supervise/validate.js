'use strict';
// setupPrimary()'s supervision options, checked as Node checks its own:
// TypeError/RangeError with Node's ERR_* codes, naming the option.

const errors = require('../errors');

function validateNumber(value, name, min = 0) {
  if (typeof value !== 'number' || Number.isNaN(value)) throw errors.ERR_INVALID_ARG_TYPE(name, 'number', value);
  if (value < min || !Number.isFinite(value)) throw errors.ERR_OUT_OF_RANGE(name, `>= ${min}`, value);
}

// `true | { ... }` options: null when off, an object of overrides when on.
function optionObject(value, name) {
  if (value === undefined || value === false) return null;
  if (value === true) return {};
  if (value === null || typeof value !== 'object') {
    throw errors.ERR_INVALID_ARG_TYPE(name, ['boolean', 'object'], value);
  }
  return value;
}

/**
 * `restart`: null when off, else the options given, flattened (restart.js
 * fills in the defaults).
 */
function resolveRestart(option) {
  const restart = optionObject(option, 'options.restart');
  if (restart === null) return null;
  const backoff = restart.backoff || {};
  const given = {
    maxRestarts: [restart.maxRestarts, 'options.restart.maxRestarts', 0],
    window: [restart.window, 'options.restart.window', 0],
    minUptime: [restart.minUptime, 'options.restart.minUptime', 0],
    backoffInitial: [backoff.initial, 'options.restart.backoff.initial', 0],
    backoffMax: [backoff.max, 'options.restart.backoff.max', 0],
    backoffFactor: [backoff.factor, 'options.restart.backoff.factor', 1],
  };
  const out = {};
  for (const [key, [value, name, min]] of Object.entries(given)) {
    if (value === undefined) continue;
    validateNumber(value, name, min);
    out[key] = value;
  }
  return out;
}

function resolveHeartbeat(option) {
  const heartbeat = optionObject(option, 'options.heartbeat');
  if (heartbeat === null) return null;
  const h = { interval: 1000, timeout: 10000, ...heartbeat };
  validateNumber(h.interval, 'options.heartbeat.interval', 1);
  validateNumber(h.timeout, 'options.heartbeat.timeout', 1);
  if (h.grace === undefined) h.grace = Math.min(h.timeout, 5000);
  validateNumber(h.grace, 'options.heartbeat.grace');
  return h;
}

function validateSupervision(s) {
  resolveRestart(s.restart);
  resolveHeartbeat(s.heartbeat);
  if (s.readiness !== undefined && s.readiness !== 'listening' && s.readiness !== 'ready') {
    throw errors.ERR_INVALID_ARG_VALUE('options.readiness', s.readiness, "must be one of: 'listening', 'ready'");
  }
  if (s.shutdownOn !== undefined) {
    if (!Array.isArray(s.shutdownOn)) throw errors.ERR_INVALID_ARG_TYPE('options.shutdownOn', 'Array', s.shutdownOn);
    const { signals } = require('node:os').constants;
    for (const sig of s.shutdownOn) {
      if (typeof sig !== 'string' || !signals[sig]) throw errors.ERR_UNKNOWN_SIGNAL(sig);
    }
  }
  if (s.shutdownTimeout !== undefined) validateNumber(s.shutdownTimeout, 'options.shutdownTimeout');
  // Placement (the engine's, but checked alike on both engines).
  if (s.sticky !== undefined && s.sticky !== false && s.sticky !== 'ip') {
    throw errors.ERR_INVALID_ARG_VALUE('options.sticky', s.sticky, "must be one of: false, 'ip'");
  }
  if (s.balance !== undefined && s.balance !== 'least-connections') {
    throw errors.ERR_INVALID_ARG_VALUE('options.balance', s.balance, "must be one of: undefined, 'least-connections'");
  }
  if (s.reapOrphans !== undefined && typeof s.reapOrphans !== 'boolean' && s.reapOrphans !== 'auto') {
    throw errors.ERR_INVALID_ARG_VALUE('options.reapOrphans', s.reapOrphans, "must be one of: true, false, 'auto'");
  }
  if (s.killSignal !== undefined) {
    const { signals } = require('node:os').constants;
    if (typeof s.killSignal !== 'string' || !signals[s.killSignal]) throw errors.ERR_UNKNOWN_SIGNAL(s.killSignal);
  }
}

module.exports = { validateNumber, resolveRestart, resolveHeartbeat, validateSupervision };
