// Types for rcluster: exactly node:cluster's, as @types/node declares them.
// rcluster is a drop-in replacement, so an app typed against node:cluster
// type-checks unchanged with only the import switched.
/// <reference types="node" />
import * as nodeCluster from 'node:cluster';

declare const cluster: nodeCluster.Cluster;

declare namespace cluster {
  type Worker = nodeCluster.Worker;
  type Cluster = nodeCluster.Cluster;
  type ClusterSettings = nodeCluster.ClusterSettings;
  type Address = nodeCluster.Address;
}

export = cluster;
