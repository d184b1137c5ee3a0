'use strict';
const { runFixture } = require('./helpers');

test('a worker sees Node\'s worker-side cluster, the fork env, and Node\'s env cleanup', async () => {
  const [node, ours] = await Promise.all([
    runFixture('worker-require.js', { module: 'node' }),
    runFixture('worker-require.js', { module: 'rcluster' }),
  ]);
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events[0]).toEqual({
    isWorker: true, isPrimary: false, sameAsNode: true, workerId: 1, envFromFork: 'yes',
    uniqueIdVisible: false, channelFdVisible: false,
  });
});
