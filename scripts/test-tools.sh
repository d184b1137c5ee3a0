#!/bin/sh
# What the test suite runs besides Node: wrk (the keep-alive load across
# reloads). Installs it with apt-get where it is missing and this user may;
# otherwise says what to install and fails (npm test runs this first).
set -e
command -v wrk >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "test-tools: installing wrk (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
  command -v wrk >/dev/null 2>&1 && exit 0
fi
echo "test-tools: the tests need wrk (https://github.com/wg/wrk; Debian/Ubuntu: apt-get install wrk)" >&2
exit 1
