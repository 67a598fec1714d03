#!/usr/bin/env bash
# Install the Debian packages named that are missing (one apt-get update for all of them).
# Run as root it installs them; otherwise it names the command to run, and fails unless
# --optional is given (then the caller goes on without them).
# --no-recommends leaves out what the packages only recommend (prometheus would bring a node
# exporter along).
#   tools/debian_packages.sh [--optional] [--no-recommends] package...
set -euo pipefail
optional=0
recommends=()
while [ $# -gt 0 ]; do
  case "$1" in
    --optional) optional=1; shift ;;
    --no-recommends) recommends=(--no-install-recommends); shift ;;
    *) break ;;
  esac
done
missing=()
for package in "$@"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${recommends[@]}" "${missing[@]}"
  exit 0
fi
echo "Debian packages needed: sudo apt-get install ${missing[*]}" >&2
[ "$optional" = 1 ] && exit 0
exit 1
