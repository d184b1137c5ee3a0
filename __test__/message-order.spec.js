'use strict';
// Differential: the order in which the primary sees one worker's channel —
// user messages around the cluster protocol, a handle, callbacks queued by a
// listener, a listener that throws — is node:cluster's, exactly. Under the
// default policy the primary's JS thread reads the channel itself and hands
// reads with protocol messages to the engine; under SCHED_RR the engine
// reads everything. Both must keep channel order.
const { runFixture } = require('./helpers');

test.each([['default', ''], ['rr', 'rr'], ['none', 'none']])('channel order under the %s policy is node:cluster\'s', async (_name, policy) => {
  const env = { NODE_CLUSTER_SCHED_POLICY: policy };
  const [node, ours] = await Promise.all([
    runFixture('message-order.js', { module: 'node', env }),
    runFixture('message-order.js', { module: 'rcluster', env }),
  ]);
  expect(node.code).toBe(0);
  expect(ours.code).toBe(0);
  const seq = (run) => run.events.find((e) => e.seq).seq;
  expect(seq(node)).toHaveLength(700 + 14);
  expect(seq(ours)).toEqual(seq(node));
});
