'use strict';
// Twenty workers later, the primary holds no more descriptors than before:
// channels, pidfds, stdio pipes and listen sockets are all closed.
const { runFixture } = require('./helpers');

test('workers that come and go leave no descriptors behind in the primary', async () => {
  const res = await runFixture('fd-leak.js', { timeout: 30000 });
  expect(res.code).toBe(0);
  expect(res.events).toEqual([{ leaked: 0 }]);
}, 40000);
