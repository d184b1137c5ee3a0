'use strict';
// Differential: bad arguments to setupPrimary/fork, send and kill throw what
// node:cluster throws (TypeError/RangeError with the same ERR_* code).
const { runBoth } = require('./helpers');

test('bad arguments throw Node\'s errors', async () => {
  const { node, ours } = await runBoth('bad-arguments.js');
  expect(ours.code).toBe(0);
  const shape = (r) => r.events.map(({ label, name, code, threw }) => ({ label, name, code, threw }));
  expect(shape(ours)).toEqual(shape(node));
  expect(shape(ours).length).toBe(19);
  for (const e of ours.events) expect(e.threw).toBeUndefined();
  // Messages too, where they are Node's fixed wording.
  const msg = (r, label) => r.events.find((e) => e.label === label).message;
  for (const label of ['exec', 'uidType', 'serialization', 'stdioNoIpc', 'sendUndefined', 'sendFunction',
    'sendOptions', 'sendBadHandle', 'killUnknownName', 'killUnknownNumber']) {
    expect([label, msg(ours, label)]).toEqual([label, msg(node, label)]);
  }
});
