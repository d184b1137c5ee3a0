'use strict';
// Differential: the primary lets go of a port only one worker listened on
// (its own admin port) once that worker is dead and no other worker took
// its place there, under every policy, as node:cluster does (so clients are
// refused there instead of hanging); after 50 kill/replace cycles it holds
// only the live workers' own ports and no more fds than before.
const { runFixture } = require('./helpers');

describe.each(['rr', 'none', 'reuseport'])('policy %s', (policy) => {
  test('a dead worker\'s own port refuses; 50 cycles leak no port and no fd', async () => {
    // node:cluster has no reuseport policy: its default (rr) stands in.
    const [node, ours] = await Promise.all([
      runFixture('per-worker-port.js', { module: 'node', env: { CYCLES: '50', NODE_CLUSTER_SCHED_POLICY: policy === 'reuseport' ? 'rr' : policy }, timeout: 60000 }),
      runFixture('per-worker-port.js', { env: { CYCLES: '50', NODE_CLUSTER_SCHED_POLICY: policy }, timeout: 60000 }),
    ]);
    expect(ours.stderr).toBe('');
    const [n] = node.events;
    const [o] = ours.events;
    // The primary holds no socket of a dead worker's own port (so clients
    // are refused there, as under node:cluster), only the live workers'.
    expect(o.open).toEqual(o.live);
    expect(n.open).toEqual(n.live);
    expect(o.fdGrowth).toBe(0);
  }, 90000);
});
