'use strict';
// Differential: unmodified libraries that drive cluster in the primary, loaded
// through rcluster/register, behave as they do on node:cluster.
const { runBoth, runFixture, ROOT } = require('./helpers');

test('throng: forks, revives a killed worker, shuts down on SIGTERM', async () => {
  const { node, ours } = await runBoth('third-party/throng.js');
  expect(node.code).toBe(0);
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events).toEqual([
    { listening: 2 },
    { exit: { code: null, signal: 'SIGKILL' } },
    { revived: 2 },
    { exit: { code: null, signal: 'SIGTERM' } },
    { exit: { code: null, signal: 'SIGTERM' } },
    { primaryExit: 0, workersLeft: 0 },
  ]);
});

test('sticky-session: the primary sends each client socket to the worker it hashes to', async () => {
  const { node, ours } = await runBoth('third-party/sticky-session.js');
  expect(node.code).toBe(0);
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events).toEqual([{ requests: 6, distinctWorkers: 1, ok: true }]);
});

test('socket.io with @socket.io/sticky and @socket.io/cluster-adapter over advanced serialization', async () => {
  const { node, ours } = await runBoth('third-party/socket-io.js');
  expect(node.code).toBe(0);
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events).toEqual([{ differentWorkers: true, bothHeard: true, binary: true, relayed: true }]);
});

test('an ES module importing node:cluster gets rcluster under node -r rcluster/register', async () => {
  const register = require('node:path').join(ROOT, 'register.js');
  const env = { NODE_OPTIONS: `--require=${register}` };
  const [node, ours] = await Promise.all([
    runFixture('third-party/esm-importer.mjs', { module: 'node' }),
    runFixture('third-party/esm-importer.mjs', { module: 'rcluster', env }),
  ]);
  expect(node.code).toBe(0);
  expect(ours.code).toBe(0);
  expect(node.events).toEqual([{ rcluster: false, isPrimary: true, port: true }, { exit: { code: 0, signal: null } }]);
  expect(ours.events).toEqual([{ rcluster: true, isPrimary: true, port: true }, { exit: { code: 0, signal: null } }]);
});
