'use strict';
// Which engine require('rcluster') runs: the native one where its binary
// loads, the portable one (node:cluster underneath) with RCLUSTER_ENGINE=node,
// and what the portable engine does with what only the native one has.
// (No binary at all: install-as-dependency.spec.js and test:platforms.)
const { spawnSync } = require('node:child_process');
const { ROOT, PORTABLE } = require('./helpers');

function probe(code, env) {
  const r = spawnSync(process.execPath, ['-e', code], {
    cwd: ROOT, encoding: 'utf8', timeout: 20000, env: { ...process.env, RCLUSTER_ENGINE: '', ...env },
  });
  return { status: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

// test:portable forces the portable engine in every child: not this one.
(PORTABLE ? test.skip : test)('the native engine by default where its binary loads, and with RCLUSTER_ENGINE=native', () => {
  for (const env of [{}, { RCLUSTER_ENGINE: 'native' }]) {
    const r = probe("const c = require('.'); console.log(c.engine, c.schedulingPolicy === c.SCHED_REUSEPORT, c === require('node:cluster'))", env);
    expect(r).toEqual({ status: 0, stdout: 'native true false', stderr: '' });
  }
});

test('RCLUSTER_ENGINE=node: node:cluster itself with rcluster\'s additions, chosen quietly', () => {
  const r = probe(`const c = require('.');
    console.log(c.engine, c === require('node:cluster'), c.schedulingPolicy === c.SCHED_RR,
      ['shutdown', 'reload', 'metrics', 'metricsText', 'health', 'availableParallelism'].every((k) => typeof c[k] === 'function'))`,
  { RCLUSTER_ENGINE: 'node' });
  expect(r).toEqual({ status: 0, stdout: 'node true true true', stderr: '' });
});

test('an unknown RCLUSTER_ENGINE is a TypeError naming it', () => {
  const r = probe("try { require('.') } catch (e) { console.log(e.name, e.code, e.message) }", { RCLUSTER_ENGINE: 'rust' });
  expect(r.stdout).toBe("TypeError ERR_INVALID_ARG_VALUE RCLUSTER_ENGINE must be 'native' or 'node'. Received 'rust'");
});

test('the portable engine: SCHED_REUSEPORT and sticky fall back to Node\'s placement with one warning each', () => {
  const r = probe(`const c = require('.');
    c.schedulingPolicy = c.SCHED_REUSEPORT;
    c.setupPrimary({ sticky: 'ip', exec: '-e', args: [] });
    c.setupPrimary({ sticky: 'ip' });
    console.log(c.schedulingPolicy === c.SCHED_RR);
    try { c.setupPrimary({ sticky: 'cookie' }) } catch (e) { console.log(e.code) }
    try { c.setupPrimary({ restart: { maxRestarts: -1 } }) } catch (e) { console.log(e.code) }`,
  { RCLUSTER_ENGINE: 'node' });
  expect(r.stdout).toBe('true\nERR_INVALID_ARG_VALUE\nERR_OUT_OF_RANGE');
  expect(r.stderr.match(/RCLUSTER_NO_REUSEPORT/g)).toHaveLength(1);
  expect(r.stderr.match(/RCLUSTER_NO_STICKY/g)).toHaveLength(1);
});

test('supervision options are checked the same on both engines', () => {
  for (const engine of ['native', 'node']) {
    // (node -e has no script: exec is given.)
    const r = probe(`const c = require('.');
      c.setupPrimary({ exec: 'app.js' });
      for (const o of [{ killSignal: 'SIGNOPE' }, { killSignal: 15 }, { reapOrphans: 'yes' }, { readiness: 'soon' }]) {
        try { c.setupPrimary(o); console.log('accepted') } catch (e) { console.log(e.name, e.code) }
      }
      c.setupPrimary({ killSignal: 'SIGTERM', reapOrphans: 'auto', readiness: 'ready' });
      console.log(c.settings.killSignal, c.settings.reapOrphans)`, { RCLUSTER_ENGINE: engine });
    expect([engine, r.stdout.split('\n')]).toEqual([engine, [
      'TypeError ERR_UNKNOWN_SIGNAL', 'TypeError ERR_UNKNOWN_SIGNAL', 'TypeError ERR_INVALID_ARG_VALUE', 'TypeError ERR_INVALID_ARG_VALUE',
      'SIGTERM auto',
    ]]);
  }
});
