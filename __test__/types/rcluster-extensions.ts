// rcluster's additions, typed.
import cluster = require('../..');

cluster.setupPrimary({
  restart: { maxRestarts: 5, window: 60000, minUptime: 1000, backoff: { initial: 100, max: 15000, factor: 2 } },
  heartbeat: { interval: 1000, timeout: 10000 },
  readiness: 'ready',
  shutdownOn: ['SIGTERM', 'SIGINT'],
  balance: 'least-connections',
});
cluster.schedulingPolicy = cluster.SCHED_REUSEPORT;
const engine: 'native' | 'node' = cluster.engine;
console.log(engine);
cluster.on('restart', (fresh, old, info) => console.log(fresh.id, old.id, info.code, info.signal, info.delay));
cluster.on('restartLimit', (w, info) => console.log(w.id, info.maxRestarts));
cluster.on('unresponsive', (w) => console.log(w.process.pid));
async function main(): Promise<void> {
  const reloaded = await cluster.reload({ timeout: 10000, concurrency: 1 });
  const down = await cluster.shutdown({ timeout: 10000 });
  const m = cluster.metrics();
  const text: string = await cluster.metricsText({ app: true, perWorker: false, timeout: 500 });
  const own: string = cluster.metricsText();
  console.log(text.length + own.length);
  console.log(reloaded[0].new, down[0].forced, m.workers[0].connectionsInFlight, m.workers[0].connectionsOpen, m.primary.rssBytes);
}
void main;
