'use strict';
// Assigning cluster.schedulingPolicy before the first fork() selects the
// policy (SCHED_REUSEPORT included); later assignments do not change it.
const { runFixture } = require('./helpers');

test.each([[1, 'SCHED_NONE'], [2, 'SCHED_RR'], [3, 'SCHED_REUSEPORT']])('policy %i (%s) by assignment', async (policy) => {
  const res = await runFixture('policy-assign.js', { env: { POLICY: String(policy) } });
  expect(res.code).toBe(0);
  // Under SCHED_RR the worker holds no real socket: its handle has no fd.
  expect(res.events).toContainEqual({ handleFd: policy !== 2 });
  expect(res.events).toContainEqual({ policy: 12345 });
});
