'use strict';
// Assigning cluster.schedulingPolicy before the first fork() selects the
// policy (SCHED_REUSEPORT included); later assignments do not change it.
const { runFixture, nativeOnly } = require('./helpers');

if (nativeOnly("SCHED_REUSEPORT, the native default, is the native engine's")) return;

test.each([[1, 'SCHED_NONE'], [2, 'SCHED_RR'], [3, 'SCHED_REUSEPORT']])('policy %i (%s) by assignment', async (policy) => {
  const res = await runFixture('policy-assign.js', { env: { POLICY: String(policy) } });
  expect(res.code).toBe(0);
  // Under SCHED_RR the worker holds no real socket: its handle has no fd.
  expect(res.events).toContainEqual({ handleFd: policy !== 2 });
  expect(res.events).toContainEqual({ policy: 12345 });
});

// rcluster's default is SCHED_REUSEPORT; NODE_CLUSTER_SCHED_POLICY picks
// Node's policies by Node's names.
test.each([[undefined, 3], ['rr', 2], ['none', 1], ['reuseport', 3], ['bogus', 3]])('NODE_CLUSTER_SCHED_POLICY=%s: policy %i', async (name, policy) => {
  const env = name === undefined ? {} : { NODE_CLUSTER_SCHED_POLICY: name };
  const res = await runFixture('policy-assign.js', { env });
  expect(res.code).toBe(0);
  expect(res.events).toContainEqual({ initial: policy });
  expect(res.events).toContainEqual({ handleFd: policy !== 2 });
});
