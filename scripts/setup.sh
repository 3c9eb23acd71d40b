#!/usr/bin/env bash
# Prepares this machine for envkit: a virtualenv with the package, a reachable Docker engine and the
# debian:bookworm-slim base image. Idempotent: a second run only checks and returns in a few seconds.
#
#   bash scripts/setup.sh            # everything
#   ENVKIT_VENV=/path bash ...       # another virtualenv location (default: .venv next to this repo)
#
# It never touches an engine that already answers (`docker info`) and never starts one when DOCKER_HOST
# points elsewhere: it only reports that the engine there is unreachable.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${ENVKIT_VENV:-$repo/.venv}
base_image=debian:bookworm-slim
dockerd_log=/var/log/envkit-dockerd.log

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "'$*' needs root; run this script as root or install sudo"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- 1. Python virtualenv with envkit ---------------------------------------------------------------
python=$(command -v python3 || true)
if [ -z "$python" ] || ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  say "installing python3 (>= 3.11 needed)"
  apt_install python3 python3-venv python3-pip
  python=$(command -v python3)
fi
if [ ! -x "$venv/bin/python" ]; then
  say "creating virtualenv $venv"
  "$python" -m venv "$venv" 2>/dev/null || { apt_install python3-venv; "$python" -m venv "$venv"; }
fi
stamp="$venv/.envkit-installed"
want=$(cat "$repo/pyproject.toml" | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing envkit and its test tools into $venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -e "$repo[dev,bench]"
  echo "$want" > "$stamp"
fi
# The editable install runs envkit from its sources: compile them now, since with PYTHONDONTWRITEBYTECODE
# set (as in many CI images, and on this machine) every command would compile them again (measured:
# `envkit validate` 0.24 s without, 0.17-0.19 s with). Only changed files are compiled.
"$venv/bin/python" -m compileall -q -j 0 "$repo/envkit" >/dev/null || true

# --- 2. A reachable Docker engine -------------------------------------------------------------------
engine_up() { timeout 10 docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null; then
  if [ -n "${DOCKER_HOST:-}" ]; then die "DOCKER_HOST=$DOCKER_HOST is set but the docker CLI is missing"; fi
  say "installing Debian's docker.io"
  apt_install docker.io iptables
fi
if engine_up; then
  :
elif [ -n "${DOCKER_HOST:-}" ]; then
  die "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST"
else
  if ! command -v dockerd >/dev/null; then
    say "installing Debian's docker.io (no Docker engine on this machine)"
    apt_install docker.io iptables
  fi
  if ! pgrep -x dockerd >/dev/null; then
    say "starting dockerd in the background (log: $dockerd_log)"
    as_root bash -c "setsid nohup dockerd >>'$dockerd_log' 2>&1 < /dev/null &"
  fi
  for _ in $(seq 1 120); do engine_up && break; sleep 0.5; done
  engine_up || die "dockerd did not answer within 60 s; see $dockerd_log"
fi

# --- 3. The base image every bundled image builds FROM ----------------------------------------------
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  if ! timeout 60 docker pull "$base_image" >/dev/null 2>&1; then
    say "no registry: making $base_image locally (debootstrap minbase + docker import, ~30 s)"
    command -v debootstrap >/dev/null || apt_install debootstrap
    # The mirror this machine's apt already uses, so the image's apt reaches the same registry.
    mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
      | grep -v security | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
    rootfs=$(mktemp -d /tmp/envkit-rootfs.XXXXXX)
    trap 'as_root rm -rf "$rootfs"' EXIT
    as_root debootstrap --variant=minbase bookworm "$rootfs" ${mirror:+"$mirror"} >/dev/null
    # Keep the image slim like the official one: no apt lists, docs or caches.
    as_root rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
      "$rootfs"/usr/share/man/*
    as_root tar -C "$rootfs" -c . | docker import \
      -c 'CMD ["bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$base_image" >/dev/null
  fi
fi
say "ready: $("$venv/bin/envkit" --version 2>/dev/null || echo envkit), engine $(docker version -f '{{.Server.Version}}'), base image $base_image"
