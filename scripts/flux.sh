#!/usr/bin/env bash
# Flux for the tests:  bash scripts/flux.sh install | run [-s SIZE] -- CMD... | status
#
# install: the Debian runtime libraries Flux needs (only the missing ones), then the prebuilt
#          Flux (flux-core + flux-pmix + Fluxion) unpacked to /opt/flux (its paths are baked in
#          at build time), then a .pth file in each project venv so `import flux` works there.
#          Running it again when all is in place takes well under a second.
# run:     runs CMD inside a private Flux instance (`flux start`; `-s 2` makes two brokers that
#          act as two nodes). No daemon, munge or config: as root, `flux start` is enough.
#          The instance ends when CMD ends; the exit status is CMD's.
# status:  says whether Flux is installed and where.
#
# Exit status 3: this machine cannot have Flux (not root, no apt, no tarball): the flux tests
# skip (under CI=true they fail).
#
# Knobs: HPCF_FLUX_VENVS (venvs to link, default ".venv .venv-mpich"), HPCF_FLUX_TARBALL (default ../shared/engines/flux/flux-install.tar.gz, then
# /work/shared/engines/flux/flux-install.tar.gz), HPCF_FLUX_PREFIX (default /opt/flux; must
# match the prefix the tarball was built for).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${HPCF_FLUX_PREFIX:-/opt/flux}"
say() { echo "[flux] $*" >&2; }

# Direct DT_NEEDED libraries of the Flux binaries (Debian 12 names); apt pulls in the rest.
RUNTIME_PKGS="libzmq5 libjansson4 liblz4-1 libarchive13 libhwloc15 libsqlite3-0 libuuid1
  liblua5.1-0 libncursesw6 libtinfo6 libstdc++6 libgcc-s1 libpmix2 libboost-graph1.74.0 libyaml-cpp0.7"

tarball() {
  local t
  for t in "${HPCF_FLUX_TARBALL:-}" ../shared/engines/flux/flux-install.tar.gz \
           /work/shared/engines/flux/flux-install.tar.gz; do
    [ -n "$t" ] && [ -f "$t" ] && { echo "$t"; return 0; }
  done
  return 1
}

# the bindings' directory (python3.X, matching the interpreter Flux was built with)
pydir() { ls -d "$PREFIX"/lib/flux/python3.* 2>/dev/null | head -n1; }

install_packages() {
  local missing="" p
  for p in $RUNTIME_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing runtime libraries ($missing) and no root/apt-get to install them"
    exit 3
  fi
  say "installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
  }
}

unpack() {
  [ -x "$PREFIX/bin/flux" ] && return 0
  local t
  t="$(tarball)" || { say "no Flux at $PREFIX and no flux-install.tar.gz (HPCF_FLUX_TARBALL)"; exit 3; }
  [ -w "$(dirname "$PREFIX")" ] || { say "cannot write $(dirname "$PREFIX")"; exit 3; }
  say "unpacking $t to /"
  # the tarball holds opt/flux/...: Flux's own paths (plugins, Python) are fixed at build time
  tar xzf "$t" -C /
}

# each project venv sees the bindings through a .pth file (no PYTHONPATH to remember)
link_venvs() {
  local d venv sp
  d="$(pydir)"
  [ -n "$d" ] || { say "no Python bindings under $PREFIX/lib/flux"; exit 3; }
  for venv in ${HPCF_FLUX_VENVS:-.venv .venv-mpich}; do
    [ -x "$venv/bin/python" ] || continue
    sp="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    [ "$(cat "$sp/flux-core.pth" 2>/dev/null)" = "$d" ] || echo "$d" > "$sp/flux-core.pth"
  done
}

case "${1:-}" in
  install)
    install_packages
    unpack
    link_venvs
    "$PREFIX/bin/flux" version >/dev/null
    say "ready: $("$PREFIX/bin/flux" version | head -n1 | tr -s '\t ' ' ')"
    ;;
  run)
    shift
    size=""
    if [ "${1:-}" = "-s" ]; then size="$2"; shift 2; fi
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || { say "usage: $0 run [-s SIZE] -- CMD..."; exit 2; }
    [ -x "$PREFIX/bin/flux" ] || { say "Flux is not installed (bash scripts/flux.sh install)"; exit 3; }
    export PATH="$PREFIX/bin:$PATH"
    # Open MPI + the pmix shell plugin: without this every rank prints PMIx security-plugin help
    # text. It must be set before `flux start`: the broker keeps it for the jobs, but the initial
    # program gets an environment with PMI_*/PMIX_* removed.
    export PMIX_MCA_psec="${PMIX_MCA_psec:-native}"
    if [ -n "$size" ]; then exec flux start --test-size="$size" "$@"; fi
    exec flux start "$@"
    ;;
  status)
    if [ -x "$PREFIX/bin/flux" ]; then
      say "installed at $PREFIX: $("$PREFIX/bin/flux" version | head -n1 | tr -s '\t ' ' ')"
    else
      say "not installed (bash scripts/flux.sh install)"; exit 3
    fi
    ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
