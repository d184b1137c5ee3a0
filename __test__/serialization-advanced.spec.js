'use strict';
// Differential: serialization 'advanced' carries what v8.serialize carries,
// and the cluster protocol works over it, under both policies.
const { runBoth } = require('./helpers');

describe.each(['rr', 'none'])('policy %s', (policy) => {
  test('V8 payloads round-trip and workers serve HTTP', async () => {
    const { node, ours } = await runBoth('advanced.js', { env: { NODE_CLUSTER_SCHED_POLICY: policy } });
    expect(ours.stderr).toBe('');
    expect(ours.code).toBe(0);
    expect(ours.events).toEqual(node.events);
    expect(ours.events).toContainEqual({ http: true });
    const result = ours.events.find((e) => e.same);
    expect(result.same.every(Boolean)).toBe(true);
    expect(result.circular).toBe(true);
    expect(result.types).toContain('[object Map]');
    expect(ours.events).toContainEqual({ exit: [0, null] });
  });
});
