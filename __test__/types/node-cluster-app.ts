// An app written against node:cluster, with only the import switched to rcluster.
import cluster = require('../..');
import http = require('node:http');
import type { Worker, Address } from 'node:cluster';

if (cluster.isPrimary) {
  cluster.setupPrimary({ exec: __filename, args: ['--x'], silent: false });
  const worker: Worker = cluster.fork({ EXTRA: '1' });
  worker.on('online', () => worker.send({ hello: true }));
  worker.on('exit', (code: number, signal: string) => console.log(code, signal));
  cluster.on('listening', (w: Worker, address: Address) => console.log(w.id, address.port));
  cluster.on('message', (w: Worker, message: unknown) => console.log(w.id, message));
  cluster.on('exit', (w: Worker) => { if (!w.exitedAfterDisconnect) cluster.fork(); });
  const policy: number = cluster.schedulingPolicy === cluster.SCHED_RR ? 1 : cluster.SCHED_NONE;
  console.log(policy, Object.keys(cluster.workers ?? {}));
  cluster.disconnect(() => console.log('done'));
} else {
  http.createServer((req, res) => res.end(String(cluster.worker?.id))).listen(3000);
}
