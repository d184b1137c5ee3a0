'use strict';
// A flooding worker cannot grow the primary without bound: while JS is busy
// the engine stops reading the channel; nothing is lost.
const { runFixture } = require('./helpers');

test('a 200 MB flood into a blocked primary is held back, then delivered whole and in order', async () => {
  const res = await runFixture('flood-blocked-primary.js', { timeout: 60000 });
  expect(res.events).toContainEqual({ got: 100000, inOrder: true });
  const { rssGrowthMiB } = res.events.find((e) => e.rssGrowthMiB !== undefined);
  // 256 undelivered 64 KiB reads at most, plus socket buffers and slack.
  expect(rssGrowthMiB).toBeLessThan(64);
}, 70000);
