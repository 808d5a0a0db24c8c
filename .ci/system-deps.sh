#!/usr/bin/env bash
# System packages the test suite needs. Installs them as root with apt; otherwise prints one
# line saying what to install and fails.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)  # the spark tests' local Spark
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "error: install these system packages first: ${need[*]} (e.g. sudo apt-get install ${need[*]})"
  exit 1
fi
