'use strict';
// Running the rcluster command in tests: start it, ask which workers serve,
// scrape its /metrics. Shared by cli.spec.js and cli-production.spec.js.
const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');
const parsePrometheus = require('parse-prometheus-text-format');
const { ROOT, killGroup, get, request, freePort } = require('./helpers');

const BIN = path.join(ROOT, 'bin', 'rcluster.js');
const FIXTURES = path.join(__dirname, 'fixtures', 'cli');

/** Starts the command (or `script`); `stderr()` is what the primary said. */
function start(args, { env = {}, cwd = FIXTURES, wrap, script = BIN } = {}) {
  const argv = [script, ...args];
  const child = wrap ?
    spawn('sh', ['-c', `${wrap}; exec "$0" "$@"`, process.execPath, ...argv], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true }) :
    spawn(process.execPath, argv, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => child.on('close', (code, signal) => r({ code, signal })));
  return { child, exited, stdout: () => out, stderr: () => err, kill: () => killGroup(child.pid) };
}

/** The pids that answer on `port`, once `want` of them have (or 10 s passed). */
async function pidsServing(port, want, ms = 10000) {
  const pids = new Set();
  const deadline = Date.now() + ms;
  while (pids.size < want && Date.now() < deadline) {
    try {
      pids.add(Number((await get(port)).split(' ').pop()));
    } catch {
      await new Promise((r) => setTimeout(r, 50)); // not listening yet
    }
  }
  return pids;
}

const scrape = (port, p = '/metrics') => request(port, { path: p });

function metric(families, name) {
  const f = families.find((x) => x.name === name);
  return f ? f.metrics : [];
}

async function workerCount(metricsPort) {
  try {
    const { body } = await scrape(metricsPort);
    return Number(metric(parsePrometheus(body), 'rcluster_workers')[0].value);
  } catch {
    return -1;
  }
}

function run(args, opts = {}) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: FIXTURES, timeout: 10000, ...opts });
}

/** Waits until the command's /metrics says `n` workers listen; false after `ms`. */
async function workersListening(metricsPort, n, ms = 15000) {
  const { waitFor } = require('./helpers');
  return waitFor(async () => {
    try {
      const { body } = await scrape(metricsPort);
      return Number(metric(parsePrometheus(body), 'rcluster_workers_listening')[0].value) === n;
    } catch {
      return false;
    }
  }, ms);
}

module.exports = { workersListening, BIN, FIXTURES, freePort, start, pidsServing, scrape, metric, workerCount, run };
