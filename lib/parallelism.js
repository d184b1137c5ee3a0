'use strict';
// cluster.availableParallelism(): how many CPUs this process may really use.
// Node's os.availableParallelism() counts the CPUs of the affinity mask (and
// so the cpuset) but not the CFS bandwidth quota a container or systemd
// sets (nodejs/node#59200): a container limited to 2 CPUs on a 64-core host
// gets 64 from it. This takes the lowest of the affinity count and every
// quota on the process's own cgroup path, cgroup v2 `cpu.max` and cgroup v1
// `cpu.cfs_quota_us` / `cpu.cfs_period_us`, rounded down, at least 1.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function read(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

// The cgroup mounts of this process's mount namespace: { root, mountpoint,
// version, controllers } from /proc/self/mountinfo.
function cgroupMounts() {
  const text = read('/proc/self/mountinfo');
  if (!text) return [];
  const mounts = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fstype, , superOptions = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    mounts.push({
      root: unescape(left[3]),
      mountpoint: unescape(left[4]),
      version: fstype === 'cgroup2' ? 2 : 1,
      controllers: superOptions.split(','),
    });
  }
  return mounts;
}

// mountinfo escapes spaces and the like as \040.
function unescape(s) {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

// The directories of the process's cgroup and of each ancestor within the
// mount, deepest first (a quota on any of them limits the process).
function cgroupDirs(mount, cgroupPath) {
  let rel = cgroupPath;
  // Inside a container the mount's root is the container's own cgroup.
  if (mount.root !== '/' && (rel === mount.root || rel.startsWith(`${mount.root}/`))) rel = rel.slice(mount.root.length);
  const dirs = [];
  let dir = path.join(mount.mountpoint, rel);
  for (;;) {
    dirs.push(dir);
    if (dir === mount.mountpoint || !dir.startsWith(mount.mountpoint)) break;
    dir = path.dirname(dir);
  }
  return dirs;
}

// CPUs allowed by the CFS quotas on the process's cgroup path (Infinity: none).
function quotaCpus() {
  const text = read('/proc/self/cgroup');
  if (!text) return Infinity;
  const mounts = cgroupMounts();
  let cpus = Infinity;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, hierarchy, controllers, cgroupPath] = m;
    if (hierarchy === '0' && controllers === '') {
      for (const mount of mounts.filter((x) => x.version === 2)) {
        for (const dir of cgroupDirs(mount, cgroupPath)) {
          const max = read(path.join(dir, 'cpu.max'));
          if (!max) continue;
          const [quota, period] = max.trim().split(/\s+/);
          if (quota !== 'max' && Number(period) > 0) cpus = Math.min(cpus, Number(quota) / Number(period));
        }
      }
    } else if (controllers.split(',').includes('cpu')) {
      for (const mount of mounts.filter((x) => x.version === 1 && x.controllers.includes('cpu'))) {
        for (const dir of cgroupDirs(mount, cgroupPath)) {
          const quota = Number(read(path.join(dir, 'cpu.cfs_quota_us')));
          const period = Number(read(path.join(dir, 'cpu.cfs_period_us')));
          if (quota > 0 && period > 0) cpus = Math.min(cpus, quota / period);
        }
      }
    }
  }
  return cpus;
}

/** The CPUs this process may use: affinity, cpuset and CFS quota; at least 1. */
function availableParallelism() {
  const affinity = os.availableParallelism();
  const quota = process.platform === 'linux' ? quotaCpus() : Infinity;
  return Math.max(1, Math.floor(Math.min(affinity, quota)));
}

module.exports = { availableParallelism };
