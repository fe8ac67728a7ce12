# Shared helpers for .ci/setup, .ci/test and .ci/run. Source it; it does nothing on its own
# except cd to the repository root.
# shellcheck shell=bash

GM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$GM_ROOT" || exit 1

GM_BUILD_DIR=build
# Debian's interpreter, not whatever python3 comes first on PATH: it is the one the
# python3 package below installs, and a shim script on PATH would be preloaded too.
GM_PYTHON=/usr/bin/python3

# Everything a developer or CI needs: build tools, test and bench libraries, the other
# allocators bench/ compares against, and the tools the scripts and tests call.
# libclang-rt-14-dev: clang's libFuzzer and sanitizer runtimes (the fuzz suite);
# libubsan1, libtsan2: gcc's (the UBSan build and the tsan suite).
# Heap profiling: google-perftools and golang-go (the two pprofs the profile tests read
# profiles back with), graphviz (their graph output, docs/profiling.md).
GM_PACKAGES=(
  meson ninja-build gcc g++ clang pkg-config
  libcmocka-dev libbenchmark-dev
  libjemalloc2 libjemalloc-dev libmimalloc2.0 libmimalloc-dev libtcmalloc-minimal4
  python3 perl valgrind time
  libpython3.11-testsuite sqlite3 git xz-utils zstd memcached
  libclang-rt-14-dev libubsan1 libtsan2
  google-perftools golang-go graphviz
)

gm_is_ci() { [[ ${CI:-} == true || ${CI:-} == 1 ]]; }

gm_step() { printf '\n==> %s\n' "$*"; }
gm_note() { printf '    %s\n' "$*"; }
gm_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs whichever of GM_PACKAGES dpkg does not list as installed. A machine that has
# them all makes no network call (no apt-get update).
gm_ensure_deps() {
  gm_step "checking packages"
  if ! command -v dpkg-query >/dev/null 2>&1; then
    gm_note "dpkg-query not found: not a Debian system, so nothing is installed for you."
    gm_note "make sure these (or your distribution's equivalents) are present: ${GM_PACKAGES[*]}"
    return 0
  fi
  local missing=() pkg
  for pkg in "${GM_PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    gm_note "all ${#GM_PACKAGES[@]} packages are installed"
    return 0
  fi
  gm_note "missing: ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 ||
      gm_die "not root and no sudo: install these yourself, then rerun: ${missing[*]}"
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q </dev/null || gm_die "apt-get update failed"
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" </dev/null ||
    gm_die "apt-get install failed for: ${missing[*]}"
}

gm_print_versions() {
  gm_note "gcc:    $(gcc -dumpfullversion 2>/dev/null || echo '?')"
  gm_note "meson:  $(meson --version 2>/dev/null || echo '?')"
  gm_note "ninja:  $(ninja --version 2>/dev/null || echo '?')"
  gm_note "python: $("$GM_PYTHON" --version 2>&1 || echo '?')"
}

# The source dir a meson build dir was configured for, or nothing.
gm_build_source_of() {
  local info=$1/meson-info/meson-info.json
  [[ -f $info ]] || return 0
  "$GM_PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["directories"]["source"])' \
    "$info" 2>/dev/null || true
}

gm_show_meson_log() {
  local log=${1:-$GM_BUILD_DIR}/meson-logs/meson-log.txt
  if gm_is_ci && [[ -f $log ]]; then
    printf '\n---- last 60 lines of %s ----\n' "$log"
    tail -n 60 "$log"
  elif [[ -f $log ]]; then
    gm_note "full log: $GM_ROOT/$log"
  fi
}

# Configures build/ (fresh, reconfigured, or wiped when it is stale: made by another meson,
# or for a source tree elsewhere, or half-made) and compiles it. Optional arguments: another
# build dir, then meson setup options for it (gm_build build-ubsan -Db_sanitize=undefined).
gm_build() {
  local dir=${1:-$GM_BUILD_DIR} src
  if (($# > 0)); then shift; fi
  local opts=("$@")
  gm_step "configuring $dir/"
  gm_is_ci && gm_print_versions
  src=$(gm_build_source_of "$dir")
  if [[ -n $src && $src != "$GM_ROOT" ]]; then
    gm_note "$dir/ was configured for $src: starting it afresh"
    rm -rf "$dir"
  elif [[ -e $dir && ! -f $dir/meson-private/coredata.dat ]]; then
    gm_note "$dir/ exists but is not a complete meson build dir: starting it afresh"
    rm -rf "$dir"
  fi
  if [[ -f $dir/meson-private/coredata.dat ]]; then
    if ! meson setup --reconfigure "${opts[@]}" "$dir"; then
      gm_note "reconfigure failed: wiping $dir/ and configuring again"
      meson setup --wipe "${opts[@]}" "$dir" || { gm_show_meson_log "$dir"; gm_die "meson setup failed"; }
    fi
  else
    meson setup "${opts[@]}" "$dir" || { gm_show_meson_log "$dir"; gm_die "meson setup failed"; }
  fi
  gm_step "compiling $dir/"
  local verbose=()
  gm_is_ci && verbose=(-v)
  meson compile -C "$dir" "${verbose[@]}" || gm_die "build failed (see the compiler output above)"
}

# Prints "N passed, N failed[, N skipped]" over one or more meson testlog.json files (a
# missing file counts nothing). Exits 1 when anything failed, 2 when no test ran and passed
# (none at all, or all skipped), 0 otherwise.
gm_test_summary() {
  "$GM_PYTHON" - "$@" <<'EOF'
import json, sys

PASS = {"OK", "EXPECTEDFAIL"}
SKIP = {"SKIP"}
passed = failed = skipped = 0
failures = []
lines = []
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            lines += [(path, l) for l in f if l.strip()]
    except OSError:
        pass
for path, line in lines:
    t = json.loads(line)
    result = t.get("result", "")
    if result in PASS:
        passed += 1
    elif result in SKIP:
        skipped += 1
    else:  # FAIL, UNEXPECTEDPASS, TIMEOUT, ERROR, INTERRUPT
        failed += 1
        where = "" if path == sys.argv[1] else f" [{path.split('/meson-logs/')[0]}]"
        failures.append(f"{t.get('name', '?')}{where} ({result})")
if failures:
    print("failed tests: " + ", ".join(failures))
if passed == 0 and not failed:
    print("error: no test ran (is libcmocka-dev installed, and did meson set up tests/?)")
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 2 if passed == 0 else 0)
EOF
}
