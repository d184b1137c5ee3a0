'use strict';
// Differential: messages, callbacks and channel errors as node:cluster has them.
const { runBoth } = require('./helpers');

test('messages round-trip, NODE_ messages stay internal, late sends fail as in Node', async () => {
  const { node, ours } = await runBoth('messages.js');
  expect(ours.code).toBe(0);
  const key = (e) => JSON.stringify(e);
  expect(ours.events.map(key).sort()).toEqual(node.events.map(key).sort());
  expect(ours.events).toContainEqual({ echoes: true });
  expect(ours.events).toContainEqual({ sendCb: null });
  expect(ours.events).toContainEqual({ sendReturn: true });
  expect(ours.events).toContainEqual({ disconnectCb: 0 });
  expect(ours.events).toContainEqual({ lateCb: 'ERR_IPC_CHANNEL_CLOSED' });
  expect(ours.events).toContainEqual({ lateError: 'ERR_IPC_CHANNEL_CLOSED' });
  expect(ours.events.filter((e) => e.leaked || e.leakedCluster)).toEqual([]);
});
