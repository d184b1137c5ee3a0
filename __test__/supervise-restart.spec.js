'use strict';
// setupPrimary({ restart }): crashed workers are replaced, quick deaths back
// off, a crash loop stops at the limit with 'restartLimit'.
const { runFixture } = require('./helpers');

test('a crash loop backs off exponentially and stops at maxRestarts', async () => {
  const settings = { restart: { maxRestarts: 3, window: 60000, minUptime: 5000, backoff: { initial: 50, factor: 2, max: 1000 } } };
  const res = await runFixture('supervised.js', {
    env: { SCENARIO: 'crashloop', WORKERS: '1', SETTINGS: JSON.stringify(settings), DEADLINE: '15000' },
  });
  const restarts = res.events.filter((e) => e.ev === 'restart');
  expect(restarts.map((e) => [e.old, e.id, e.info.delay, e.info.code])).toEqual([
    [1, 2, 50, 1], [2, 3, 100, 1], [3, 4, 200, 1],
  ]);
  const limit = res.events.filter((e) => e.ev === 'restartLimit');
  expect(limit).toEqual([{ ev: 'restartLimit', id: 4, info: { code: 1, signal: null, maxRestarts: 3, window: 60000 } }]);
  // Nothing left to run: the primary exits by itself.
  expect(res.code).toBe(0);
});

test('restart is off by default, as in node:cluster', async () => {
  const res = await runFixture('supervised.js', { env: { SCENARIO: 'crashloop', WORKERS: '1' } });
  expect(res.events.filter((e) => e.ev === 'restart')).toEqual([]);
  expect(res.events.filter((e) => e.ev === 'exit')).toHaveLength(1);
  expect(res.code).toBe(0);
});

test('bad supervision options throw Node-style errors', async () => {
  const cluster = require('..');
  expect(() => cluster.setupPrimary({ restart: 'yes' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  expect(() => cluster.setupPrimary({ restart: { maxRestarts: -1 } })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  expect(() => cluster.setupPrimary({ heartbeat: { timeout: 'soon' } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  expect(() => cluster.setupPrimary({ readiness: 'maybe' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  expect(() => cluster.setupPrimary({ shutdownOn: ['SIGNOPE'] })).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_SIGNAL' }));
  await expect(async () => cluster.shutdown({ timeout: -5 })).rejects.toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  expect(() => cluster.reload({ concurrency: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
});
