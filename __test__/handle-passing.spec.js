'use strict';
// Differential: handles travel both ways with worker.send(message, handle)
// and process.send(message, handle), under both serializations.
const net = require('node:net');
const { startFixture, udpAsk } = require('./helpers');

const read = (port) => new Promise((resolve, reject) => {
  const c = net.connect(port, '127.0.0.1');
  let data = '';
  c.setEncoding('utf8');
  c.on('data', (d) => { data += d; });
  c.on('end', () => resolve(data));
  c.on('error', reject);
  c.setTimeout(5000, () => c.destroy(new Error('timeout')));
});

async function exercise(module, env) {
  const app = startFixture('handles.js', { module, env });
  try {
    const { ports } = await app.next((e) => e.ports);
    const { sidePort } = await app.next((e) => e.sidePort);
    const out = {
      socket: await read(ports.front),
      server: await read(ports.server),
      udp: await udpAsk(ports.udp),
      back: await read(sidePort),
    };
    out.got = await app.next((e) => e.gotFromWorker);
    return out;
  } finally {
    app.kill();
  }
}

describe.each(['json', 'advanced'])('serialization %s', (serialization) => {
  test('sockets, servers and dgram sockets cross both ways as in node:cluster', async () => {
    const env = { SERIALIZATION: serialization };
    const [node, ours] = [await exercise('node', env), await exercise('rcluster', env)];
    expect(ours).toEqual(node);
    expect(ours).toEqual({
      socket: 'worker 1 socket\n',
      server: 'worker 1 server\n',
      udp: 'worker 1 udp',
      back: 'primary 1\n',
      got: { gotFromWorker: 1, bigLength: 0, isSocket: true },
    });
  });
});

test('a handle sent with a 200 KB message arrives with it (the fd comes with the first read, the message ends reads later)', async () => {
  const env = { BIG: '200000' };
  const [node, ours] = [await exercise('node', env), await exercise('rcluster', env)];
  expect(ours).toEqual(node);
  expect(ours.got).toEqual({ gotFromWorker: 1, bigLength: 200000, isSocket: true });
  expect(ours.back).toBe('primary 1\n');
});
