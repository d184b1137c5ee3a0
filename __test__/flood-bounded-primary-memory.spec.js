'use strict';
// A flooding worker cannot grow the primary without bound: while JS is busy
// nobody reads its channel under the default policy (the JS thread reads
// it), and under SCHED_RR the engine, which reads it there, stops at the
// high-water mark of undelivered batches. Nothing is lost.
const { runFixture } = require('./helpers');

test.each([['default', ''], ['rr', 'rr']])('a 200 MB flood into a blocked primary (%s policy) is held back, then delivered whole and in order', async (_name, policy) => {
  const res = await runFixture('flood-blocked-primary.js', { timeout: 60000, env: { NODE_CLUSTER_SCHED_POLICY: policy } });
  expect(res.events).toContainEqual({ got: 100000, inOrder: true });
  const { rssGrowthMiB } = res.events.find((e) => e.rssGrowthMiB !== undefined);
  // 256 undelivered 64 KiB reads at most, plus socket buffers and slack.
  expect(rssGrowthMiB).toBeLessThan(64);
}, 70000);
