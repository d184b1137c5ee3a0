'use strict';
// A worker killed with a connection handed to it and not yet acknowledged,
// whose channel closes only after its 'exit' (a child of its own held it):
// it still gets 'disconnect' when the channel closes, and leaves
// cluster.workers. (node:cluster never emits that 'disconnect' — child_process
// holds a disconnect back until sent handles are acknowledged — and keeps
// the worker listed for good; the portable engine makes up for it.)
const { runFixture } = require('./helpers');

test("a worker killed with a connection in flight and its channel held past its exit: 'exit', then 'disconnect', then unlisted", async () => {
  const res = await runFixture('held-channel.js', { env: { NODE_CLUSTER_SCHED_POLICY: 'rr', BLOCK_MS: '5000' } });
  const evs = res.events.filter((e) => e.ev);
  expect(evs.map((e) => e.ev)).toEqual(['killing', 'exit', 'disconnect']);
  expect(evs[1]).toEqual({ ev: 'exit', signal: 'SIGKILL', connected: true }); // the channel outlived the process
  expect(evs[2]).toEqual({ ev: 'disconnect', listed: 0 });
  expect(res.code).toBe(0);
});
