'use strict';
// Differential: what setupPrimary() and fork(env) decide is what the worker gets.
const os = require('node:os');
const { runBoth } = require('./helpers');

test('exec, args, execArgv, cwd, uid/gid and the fork env reach the worker as in Node', async () => {
  const { node, ours } = await runBoth('settings.js');
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  const seen = ours.events.find((e) => e.argv);
  expect(seen).toMatchObject({
    argv: ['--flag', 'value with spaces'],
    execArgv: ['--no-warnings', '--max-old-space-size=64'],
    cwd: os.tmpdir(),
    isWorker: true,
    env: 'from-fork',
  });
  if (process.getuid() === 0) expect([seen.uid, seen.gid]).toEqual([65534, 65534]);
});
