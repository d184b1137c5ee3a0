'use strict';
// Loads the native engine: the binary for what the running Node is (its
// platform, arch and libc, from lib/platform.js), either
// rcluster.<platform>.node beside package.json (a clone's build, or
// `rcluster-build` from source) or the platform package rcluster-<platform>
// (optionalDependencies, napi-rs's layout). Not napi-rs's generated loader:
// it tells musl from glibc by the host's /usr/bin/ldd first, so a musl Node
// on a glibc host (distroless, nix) would get the glibc binary.

const path = require('node:path');
const { platformTriple, MIN_RUST } = require('./platform');

const ROOT = path.join(__dirname, '..');
let loaded = null; // { binding } or { error }, once

function attempt() {
  const triple = platformTriple();
  const causes = [];
  for (const id of [path.join(ROOT, `rcluster.${triple}.node`), `rcluster-${triple}`]) {
    try {
      return { binding: require(id) };
    } catch (cause) {
      if (cause.code !== 'MODULE_NOT_FOUND' || !String(cause.message).includes(id)) causes.push(cause);
    }
  }
  const err = new Error(
    `rcluster: no native engine loads on this platform (${triple}, Node ${process.version}). ` +
    (causes.length ? `The binary failed to load: ${causes[0].message}. ` :
      `Install the platform package rcluster-${triple} if one is published for it, or `) +
    `build the engine from source with \`npx rcluster-build\` (needs Rust >= ${MIN_RUST}, ` +
    'https://rustup.rs). Without it, RCLUSTER_ENGINE=node runs the portable engine on node:cluster.',
  );
  err.code = 'ERR_RCLUSTER_NATIVE_BINDING';
  err.platform = triple;
  if (causes.length) err.cause = causes[0];
  return { error: err };
}

/** The engine's binding, or null when none loads here (then `error()` says why). */
function tryLoad() {
  loaded ??= attempt();
  return loaded.binding ?? null;
}

/** The engine's binding; throws ERR_RCLUSTER_NATIVE_BINDING when none loads here. */
function load() {
  if (tryLoad() === null) throw loaded.error;
  return loaded.binding;
}

module.exports = { load, tryLoad, error: () => loaded?.error ?? null };
