// Types for rcluster: exactly node:cluster's, as @types/node declares them.
// rcluster is a drop-in replacement, so an app typed against node:cluster
// type-checks unchanged with only the import switched.
/// <reference types="node" />
import * as nodeCluster from 'node:cluster';

/** rcluster's additions to node:cluster. */
interface RclusterExtensions {
  /**
   * Scheduling policy: one SO_REUSEPORT listen socket per worker, created and
   * kept by the primary; the kernel spreads connections, and a replacement
   * worker inherits a dead worker's socket and queue. Also selected by
   * `NODE_CLUSTER_SCHED_POLICY=reuseport`. Falls back to SCHED_RR (with a
   * warning) where SO_REUSEPORT is missing.
   */
  readonly SCHED_REUSEPORT: number;
}

declare const cluster: nodeCluster.Cluster & RclusterExtensions;

declare namespace cluster {
  type Worker = nodeCluster.Worker;
  type Cluster = nodeCluster.Cluster;
  type ClusterSettings = nodeCluster.ClusterSettings;
  type Address = nodeCluster.Address;
}

export = cluster;
