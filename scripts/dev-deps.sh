#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build payrail: libclang (bindgen,
# used by the rocksdb crate's build) and Debian's RocksDB library, which the
# rocksdb crate links against instead of compiling RocksDB from C++ (minutes
# instead of half an hour on 2 cores; see .cargo/config.toml), pytest, and a JDK
# for clients/java.
# Does nothing when all are present, so it is cheap to run before every build.
set -euo pipefail

have_libclang() {
  ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang-*.so* >/dev/null 2>&1
}
have_rocksdb() {
  [ -e /usr/lib/x86_64-linux-gnu/librocksdb.so ] && [ -e /usr/include/rocksdb/c.h ]
}

# pytest, for the Python client's tests (clients/python).
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
  echo "dev-deps: installing pytest (pip, one time)..." >&2
  python3 -m pip install --quiet --disable-pip-version-check pytest
fi

# The Python client's TLS test makes its certificates with the openssl command.
if ! command -v openssl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "dev-deps: installing openssl (one time)..." >&2
  if [ "$(id -u)" -ne 0 ]; then openssl_sudo=sudo; else openssl_sudo=""; fi
  $openssl_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $openssl_sudo apt-get install -y -qq --no-install-recommends \
    openssl >/dev/null
fi

# clients/java builds and runs its tests with a JDK (17 or newer) alone.
if ! command -v javac >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "dev-deps: installing default-jdk-headless (one time)..." >&2
  if [ "$(id -u)" -ne 0 ]; then jdk_sudo=sudo; else jdk_sudo=""; fi
  $jdk_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $jdk_sudo apt-get install -y -qq --no-install-recommends \
    default-jdk-headless >/dev/null
fi

if have_libclang && have_rocksdb; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "dev-deps: this script installs with apt-get (Debian/Ubuntu)." >&2
  echo "dev-deps: install libclang and RocksDB 7.x development files by hand," >&2
  echo "dev-deps: then set ROCKSDB_LIB_DIR in .cargo/config.toml to where librocksdb.so is." >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "dev-deps: installing libclang-dev and librocksdb-dev (one time)..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  libclang-dev librocksdb-dev >/dev/null
have_libclang && have_rocksdb
