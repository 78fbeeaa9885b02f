#!/usr/bin/env bash
# Benchmarks Airlock against the floor and its peers, all in the same run (issue 5, docs/performance.md).
#   ./bench.sh           full run (a few minutes)
#   ./bench.sh --quick   fewer runs, 100 idle sandboxes, 5 s of API load (under three minutes)
# Prints a table and writes bench/results/latest.json. Starts its own server on a loopback port
# with a temp data dir; deletes every sandbox, container and temp dir it made, even on failure.
set -euo pipefail
cd "$(dirname "$0")"
QUICK=""
[ "${1:-}" = "--quick" ] && QUICK="--quick"

# The build tree is shared with other sessions: build under the same lock they take.
exec 9>/tmp/airlock-build.lock
flock 9
source scripts/setup.sh
dotnet build bench/Airlock.Bench/Airlock.Bench.csproj -c "$CONFIGURATION" -v quiet -nologo -clp:ErrorsOnly
flock -u 9
BENCH_DLL="$PWD/bench/Airlock.Bench/bin/$CONFIGURATION/net10.0/airlock-bench.dll"

missing=()
for p in crun runc bubblewrap wrk; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (the peers and the load generator)"
  # A peer that cannot be installed is reported as null in the results, not a reason to stop.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "warning: could not install ${missing[*]}: those figures will be missing" >&2
  fi
fi

# Short path: the sandboxes' control sockets live under it (108-byte sun_path).
WORK=$(mktemp -d /tmp/alb.XXXX)
SERVER_PID=""
KEY="e2b_$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')"
URL=""

cleanup() {
  set +e
  if [ -n "$URL" ] && [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # Whatever the bench app did not delete (it was killed, it failed): delete through the API.
    for id in $(curl -s -H "Authorization: Bearer $KEY" "$URL/v1/sandboxes" | grep -o '"id":"[^"]*"' | cut -d'"' -f4); do
      curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $KEY" "$URL/v1/sandboxes/$id"
    done
  fi
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  # Sandboxes outlive the server: kill any init still running from this run's data dir.
  for f in "$WORK"/data/sandboxes/*/init.pid; do
    [ -f "$f" ] && kill -KILL "$(cut -d' ' -f1 "$f")" 2>/dev/null
  done
  # ...and the run's cgroups: its parent is airlock-<sha256 of the sandboxes dir> in every hierarchy.
  sleep 0.2
  cg="airlock-$(printf '%s' "$WORK/data/sandboxes" | sha256sum | cut -c1-8)"
  for d in /sys/fs/cgroup/"$cg" /sys/fs/cgroup/*/"$cg"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  crun --root "$WORK/crun-state" delete -f airlock-bench-crun >/dev/null 2>&1
  runc --root "$WORK/runc-state" delete -f airlock-bench-runc >/dev/null 2>&1
  mountpoint -q "$WORK/rootfs" && umount "$WORK/rootfs"
  mountpoint -q "$WORK/rootfs" || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> building the floor programs"
gcc -O2 -Wall -Wextra -o "$WORK/timeit" bench/floors/timeit.c
TIMEIT="$WORK/timeit"

echo "==> base template (built once, cached by the hash of its spec)"
AIRLOCK_TEMPLATES="$PWD/data/templates" timeout 900 dotnet "$SERVER_DLL" build-template base
ROOTFS=$(ls -d data/templates/base-*/rootfs 2>/dev/null | head -1 || true)
if [ -z "$ROOTFS" ]; then
  echo "no built base template under data/templates" >&2
  exit 1
fi
ROOTFS="$PWD/$ROOTFS"
# The peers get the template's rootfs read-only through a bind mount: they cannot modify it.
mkdir "$WORK/rootfs"
mount --bind "$ROOTFS" "$WORK/rootfs"
mount -o remount,bind,ro "$WORK/rootfs"

if [ -n "$QUICK" ]; then N_SPAWN=300 N_NS=50 N_CRUN=30 N_RUNC=20; else N_SPAWN=1000 N_NS=200 N_CRUN=100 N_RUNC=50; fi
FLOORS="$WORK/floors"
mkdir "$FLOORS"

# measure NAME N PROGRAM ARGS...: per-run ms into NAME.txt, or the reason it could not run into NAME.err.
measure() {
  local name=$1 n=$2; shift 2
  echo "==> $name ($n runs)"
  "$@" 5 >/dev/null 2>"$FLOORS/$name.err.tmp" || true   # warm-up (page cache, binaries)
  if "$@" "$n" >"$FLOORS/$name.txt" 2>>"$FLOORS/$name.err.tmp"; then
    rm -f "$FLOORS/$name.err.tmp"
  else
    { echo -n "failed: "; tail -n 3 "$FLOORS/$name.err.tmp" | tr '\n' ' '; } >"$FLOORS/$name.err"
    rm -f "$FLOORS/$name.txt" "$FLOORS/$name.err.tmp"
    echo "    $(cat "$FLOORS/$name.err")"
  fi
}
# "timeit N" runs PROGRAM N times with vfork+exec and waitpid.
run_spawn()   { "$TIMEIT" "$1" /bin/true; }
run_unshare() { "$TIMEIT" "$1" /usr/bin/unshare --pid --net --mount --uts --ipc --fork --mount-proc /bin/true; }
run_bwrap()   { "$TIMEIT" "$1" /usr/bin/bwrap --unshare-all --cap-drop ALL --ro-bind "$WORK/rootfs" / --proc /proc --dev /dev /bin/true; }

# A minimal OCI bundle over the same rootfs: read-only root, pid/net/mount/uts/ipc namespaces,
# no capabilities, no_new_privs, /proc and a tmpfs /dev. Both runtimes delete the container
# when `run` returns, so the same id is reused run after run.
cat >"$WORK/config.json" <<JSON
{"ociVersion":"1.0.2",
 "process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["/bin/true"],"env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"cwd":"/",
            "noNewPrivileges":true,"capabilities":{"bounding":[],"effective":[],"permitted":[]}},
 "root":{"path":"$WORK/rootfs","readonly":true},
 "hostname":"bench",
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
           {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}],
 "linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"mount"},{"type":"uts"},{"type":"ipc"}]}}
JSON
# crun 1.8 refuses this machine's hybrid cgroup layout ("cgroups in hybrid mode not supported,
# drop all controllers from cgroupv2") when it sees the cgroup2 tree at /sys/fs/cgroup/unified.
# Hiding that tree under a tmpfs in a private mount namespace (unshare -m makes mounts private,
# so the host never sees it) makes crun use the v1 controllers. The timing loop runs inside that
# namespace, so the figure is crun's own cost, not unshare's or sh's.
run_crun() {
  unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec "$0" "$1" /usr/bin/crun --root "$2/crun-state" run -b "$2" airlock-bench-crun' \
    "$TIMEIT" "$1" "$WORK"
}
run_runc() { (cd "$WORK" && "$TIMEIT" "$1" /usr/sbin/runc --root "$WORK/runc-state" run -b "$WORK" airlock-bench-runc); }

measure floor_spawn "$N_SPAWN" run_spawn
measure floor_unshare "$N_NS" run_unshare
measure bwrap "$N_NS" run_bwrap
measure crun "$N_CRUN" run_crun
measure runc "$N_RUNC" run_runc

echo "==> starting Airlock (data in $WORK/data)"
mkdir "$WORK/data"
env AIRLOCK_URLS=http://127.0.0.1:0 AIRLOCK_DATA="$WORK/data" AIRLOCK_TEMPLATES="$PWD/data/templates" \
  AIRLOCK_BOOTSTRAP_API_KEY="$KEY" Logging__LogLevel__Default=Warning Logging__LogLevel__Microsoft.Hosting.Lifetime=Information \
  dotnet "$SERVER_DLL" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 600); do
  URL=$(grep -o 'Now listening on: http://127\.0\.0\.1:[0-9]*' "$WORK/server.log" | head -1 | sed 's/Now listening on: //' || true)
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "the server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
echo "==> $URL: waiting for the base template"
for _ in $(seq 1200); do
  health=$(curl -s "$URL/health" || true)
  echo "$health" | grep -q '"name":"base","hash":"[^"]*","status":"ready"' && break
  if echo "$health" | grep -q '"name":"base","hash":"[^"]*","status":"failed"'; then echo "base template failed: $health" >&2; exit 1; fi
  sleep 0.5
done
if echo "$health" | grep -q '"status":"building"'; then
  echo "warning: a template is still building in the background; figures will be noisy" >&2
fi

mkdir -p bench/results
dotnet "$BENCH_DLL" --url "$URL" --key "$KEY" --floors "$FLOORS" --out bench/results/latest.json $QUICK
