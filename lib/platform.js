'use strict';
// The napi-rs target name of this process's platform ("linux-x64-gnu"), as
// the generated loader and the npm/<triple>/ packages spell it.

const MIN_RUST = '1.88';

function isMusl() {
  if (process.platform !== 'linux') return false;
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null;
  // glibcVersionRuntime is set only when Node runs on glibc.
  return !(report && report.header && report.header.glibcVersionRuntime);
}

function platformTriple() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    const abi = arch === 'arm' ? 'gnueabihf' : isMusl() ? 'musl' : 'gnu';
    return `linux-${arch}-${abi}`;
  }
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

module.exports = { platformTriple, MIN_RUST };
