'use strict';
// Differential: worker.process.disconnect(), stdio as an array, the execArgv
// default and send(socket, { keepOpen: true }) behave as in node:cluster.
const { runBoth } = require('./helpers');

test('process surface details match node:cluster', async () => {
  const { node, ours } = await runBoth('process-surface.js', { args: ['--no-warnings-not-a-flag'] });
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events).toContainEqual({ execArgvDefault: true });
  expect(ours.events).toContainEqual({ workerGot: true });
  expect(ours.events).toContainEqual({ client: ['primary still has it', 'worker wrote'] });
  expect(ours.events).toContainEqual({ connectedBefore: true });
  expect(ours.events).toContainEqual({ connectedAfter: false });
  expect(ours.events).toContainEqual({ events: ['disconnect', 'exit'], code: 0, signal: null, stdout: 'hello from stdout\n', isDead: true });
});
