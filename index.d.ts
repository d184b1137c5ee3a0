// Types for rcluster: node:cluster's, as @types/node declares them, plus
// rcluster's additions. rcluster is a drop-in replacement, so an app typed
// against node:cluster type-checks unchanged with only the import switched.
/// <reference types="node" />
import * as nodeCluster from 'node:cluster';

declare namespace cluster {
  type Worker = nodeCluster.Worker;
  type Address = nodeCluster.Address;

  interface RestartOptions {
    /** Restarts allowed inside `window` before 'restartLimit' (default 10). */
    maxRestarts?: number;
    /** The crash-loop window in ms (default 60000). */
    window?: number;
    /** A worker that dies sooner (ms) counts as a quick death and backs off (default 1000). */
    minUptime?: number;
    /** Delay before replacing quick deaths: initial * factor^(n-1), at most max (ms). */
    backoff?: { initial?: number; max?: number; factor?: number };
  }

  interface HeartbeatOptions {
    /** How often each worker's event loop reports, in ms (default 1000). */
    interval?: number;
    /** Silence after which the worker gets SIGABRT, in ms (default 10000). */
    timeout?: number;
    /** Time between SIGABRT and SIGKILL, in ms (default min(timeout, 5000)). */
    grace?: number;
  }

  interface ClusterSettings extends nodeCluster.ClusterSettings {
    /** Replace workers that exit without exitedAfterDisconnect. Off by default. */
    restart?: boolean | RestartOptions;
    /** The hung-worker watchdog. Off by default. */
    heartbeat?: boolean | HeartbeatOptions;
    /**
     * When a reloaded worker counts as ready: 'listening' (default) or
     * 'ready' (cluster.worker.ready(), or the plain message 'ready' from
     * process.send('ready'), as PM2's wait_ready).
     */
    readiness?: 'listening' | 'ready';
    /**
     * A signal each worker being stopped by shutdown() or reload() gets with
     * the disconnect, so the app's own shutdown code runs (the rcluster
     * command: SIGTERM). An app with no handler for it drains, then exits 0.
     * Unset by default: only the disconnect, as worker.disconnect().
     */
    killSignal?: NodeJS.Signals;
    /**
     * Reap zombie children nobody owns (orphans adopted as PID 1 or a child
     * subreaper), never a worker or a child the app spawned. 'auto': only
     * when this process is PID 1 or a child subreaper. Native engine only.
     */
    reapOrphans?: boolean | 'auto';
    /**
     * Sticky placement: every connection from one client address reaches the
     * same worker (a hash of the address into 64 buckets, each a worker
     * slot's), under SCHED_REUSEPORT (in the kernel) and SCHED_RR. Frozen at
     * the first fork().
     */
    sticky?: false | 'ip';
    /**
     * 'least-connections': where the primary hands connections out (SCHED_RR,
     * stolen connections, sticky clients whose worker is gone), the next
     * goes to the worker with the fewest open connections. Frozen at the
     * first fork(). Native engine only.
     */
    balance?: 'least-connections';
    /** Signals that run cluster.shutdown() and then exit the primary. */
    shutdownOn?: NodeJS.Signals[];
    /** The deadline shutdownOn uses, in ms (default 10000). */
    shutdownTimeout?: number;
  }

  interface WorkerOutcome {
    id: number;
    pid: number | undefined;
    code: number | null;
    signal: NodeJS.Signals | null;
    /** true when the deadline passed and the worker was SIGKILLed. */
    forced: boolean;
  }

  interface ReloadOutcome {
    old: number;
    new: number;
    code: number | null;
    signal: NodeJS.Signals | null;
    forced: boolean;
  }

  interface WorkerMetrics {
    id: number;
    pid: number | undefined;
    state: string;
    uptimeMs: number;
    restarts: number;
    /** Connections the primary handed to it; null on the portable engine, which does not count them. */
    connectionsDispatched: number | null;
    connectionsInFlight: number | null;
    /** Connections open on its servers, as its worker hook last reported (0 before any). */
    connectionsOpen: number;
    /** From the heartbeat; null when heartbeats are off. */
    rssBytes: number | null;
    eventLoopDelayMs: number | null;
    heartbeatAgeMs: number | null;
  }

  interface Metrics {
    primary: { pid: number; rssBytes: number };
    /** Workers replaced after a crash since the primary started. */
    cluster: { restartsTotal: number };
    workers: WorkerMetrics[];
  }

  interface Health {
    /** The primary runs (always true when you can ask). */
    live: true;
    /** At least one worker is listening and no shutdown is under way. */
    ready: boolean;
    listening: number;
    shuttingDown: boolean;
  }

  interface RestartInfo {
    code: number | null;
    signal: NodeJS.Signals | null;
    delay: number;
  }

  /** cluster.run(): the rcluster command's settings, by their configuration-file names. */
  interface RunOptions {
    /** The app's entry file, or a directory (package.json "main", else index.js). */
    app: string;
    /** The app's arguments. */
    args?: string[];
    /** Workers to run: a number (at most 1024) or 'max' (default). */
    instances?: number | 'max';
    /** 'host:port' to serve Prometheus metrics at /metrics. */
    metrics?: string | null;
    metricsPerWorker?: boolean;
    /** 'host:port' to serve /livez and /readyz (may be the metrics address). */
    health?: string | null;
    drainDelay?: number;
    shutdownTimeout?: number;
    reloadTimeout?: number;
    restart?: boolean;
    maxRestarts?: number;
    sched?: 'rr' | 'none' | 'reuseport' | null;
    sticky?: 'ip' | false;
    balance?: 'least-connections' | null;
    readyOn?: 'listening' | 'message';
    killSignal?: NodeJS.Signals;
    /** No lines from the primary on stderr. */
    quiet?: boolean;
  }
}

interface RclusterExtensions {
  /**
   * Scheduling policy, and rcluster's default (`cluster.schedulingPolicy`
   * starts as this where the kernel has SO_REUSEPORT, else SCHED_RR): one
   * SO_REUSEPORT listen socket per worker, created and kept by the primary;
   * each worker accepts on its own, and a BPF program the primary attaches
   * spreads new connections over the sockets of live workers. A replacement
   * worker inherits a dead worker's socket and queue. Connections stuck in
   * the queue of a blocked worker for 100 ms are taken by the primary and
   * handed to the others. Also selected by
   * `NODE_CLUSTER_SCHED_POLICY=reuseport`; `rr` and `none` select Node's.
   */
  readonly SCHED_REUSEPORT: number;
  /**
   * Which engine runs the primary: 'native' (Rust; Linux x64/arm64, glibc
   * or musl) or 'node' (the portable engine on node:cluster, wherever no
   * native engine loads, or with RCLUSTER_ENGINE=node).
   */
  readonly engine: 'native' | 'node';
  settings: cluster.ClusterSettings;
  setupPrimary(settings?: cluster.ClusterSettings): void;
  /** @deprecated since Node v16.0.0 - use setupPrimary. */
  setupMaster(settings?: cluster.ClusterSettings): void;
  /**
   * Graceful shutdown: every worker closes its servers and leaves once its
   * in-flight requests are done; whatever is left at the deadline is SIGKILLed.
   */
  shutdown(options?: {
    timeout?: number;
    /** ms to keep serving, not ready (health()), before the workers leave (default 0). */
    drainDelay?: number;
  }): Promise<cluster.WorkerOutcome[]>;
  /** Rolling restart: each worker is replaced once its replacement is ready. */
  reload(options?: { timeout?: number; concurrency?: number }): Promise<cluster.ReloadOutcome[]>;
  /** Per-worker numbers, easy to export (e.g. as Prometheus gauges). */
  metrics(): cluster.Metrics;
  /** `metrics()` as Prometheus text exposition (format 0.0.4). */
  metricsText(options?: { app?: false; timeout?: number }): string;
  /**
   * With `app: true`: rcluster's series, then the app's own prom-client
   * metrics merged across the live workers (each metric's aggregator), and
   * rcluster_metrics_workers_missing for workers that did not answer within
   * `timeout` ms (default 1000). `perWorker`: labelled by worker instead.
   */
  metricsText(options: { app: true; perWorker?: boolean; timeout?: number }): Promise<string>;
  /** Liveness and readiness, for Kubernetes-style probes. */
  health(): cluster.Health;
  /**
   * Runs this process as the rcluster command's primary: `instances` workers
   * of `app`, supervised; SIGHUP/SIGUSR2 reload, SIGTTIN adds a worker and
   * SIGTTOU removes one, SIGTERM/SIGINT shut down; the process exits with the
   * command's codes (0 stopped, 1 a worker killed at the deadline, 2 boot
   * failure or crash loop, 3 every worker exited with restart off). Bad
   * options throw a TypeError (ERR_INVALID_ARG_VALUE); a missing app an
   * Error with code ENOENT.
   */
  run(options: cluster.RunOptions): void;
  /** CPUs this process may use: affinity, cpuset and the cgroup CPU quota; at least 1. */
  availableParallelism(): number;
  on(event: 'restart', listener: (worker: cluster.Worker, old: cluster.Worker, info: cluster.RestartInfo) => void): this;
  on(event: 'restartLimit', listener: (worker: cluster.Worker, info: { code: number | null; signal: NodeJS.Signals | null; maxRestarts: number; window: number }) => void): this;
  on(event: 'unresponsive', listener: (worker: cluster.Worker) => void): this;
}

declare const cluster: Omit<nodeCluster.Cluster, 'settings' | 'setupPrimary' | 'setupMaster'> & RclusterExtensions & nodeCluster.Cluster;

export = cluster;
