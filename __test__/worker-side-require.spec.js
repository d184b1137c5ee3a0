'use strict';
const { runBoth } = require('./helpers');

test('a worker sees Node\'s worker-side cluster, the fork env, and Node\'s env cleanup', async () => {
  const { node, ours } = await runBoth('worker-require.js');
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events[0]).toEqual({
    isWorker: true, isPrimary: false, sameAsNode: true, workerId: 1, envFromFork: 'yes',
    uniqueIdVisible: false, channelFdVisible: false,
  });
});
