'use strict';
// Loads the engine: the napi-rs generated loader (binding.js) picks the
// binary for this platform — rcluster.<triple>.node beside it (a clone's
// build, or the one bundled in a packed tarball), else the platform package
// rcluster-<triple> from optionalDependencies. When neither loads, say what
// is missing and how to get it, instead of the loader's generic error.

const { platformTriple, MIN_RUST } = require('./platform');

function load() {
  try {
    return require('../binding.js');
  } catch (cause) {
    const triple = platformTriple();
    const err = new Error(
      `rcluster: no native binary loads on this platform (${triple}, Node ${process.version}). ` +
      `Install the prebuilt package rcluster-${triple} if one exists for it, or install rcluster ` +
      `with a Rust toolchain (Rust >= ${MIN_RUST}, https://rustup.rs) on PATH so that it builds from source ` +
      '(npm rebuild rcluster). rcluster runs on Linux only.',
    );
    err.code = 'ERR_RCLUSTER_NATIVE_BINDING';
    err.cause = cause;
    throw err;
  }
}

module.exports = load();
