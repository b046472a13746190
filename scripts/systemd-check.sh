#!/usr/bin/env bash
# Checks that `make install` gives a service that works as deploy/README.md says: installs into a
# scratch DESTDIR, verifies every installed unit (systemd-analyze verify, kmirror.service and the
# kmirror@.service template), then
# runs the installed unit's ExecStart binary and config file as an
# unprivileged user (the unit runs as a DynamicUser: no root, no supplementary groups) and
# requires that it can read its configuration (`kmirror validate` exits 0).
#
# If the installed kmirror serves /startupz, it also starts the unit's command the way systemd
# would (as that user, NOTIFY_SOCKET set, both clusters unreachable) and requires READY=1 within
# 15 s while /readyz still answers 503: systemd must see the service started even while a
# cluster is down.
#
# Needs root (to switch user) and setpriv; python3 for the notification part.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
user="${KMIRROR_CHECK_USER:-nobody}"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
  echo "systemd-check: needs root and setpriv to run the service as an unprivileged user; skipped" >&2
  exit 0
fi

tmp="$(mktemp -d)"
pid=""
listener=""
cleanup() {
  if [ -n "$pid" ]; then { kill -9 "$pid"; wait "$pid"; } 2>/dev/null || true; fi
  if [ -n "$listener" ]; then kill "$listener" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
chmod 0755 "$tmp"
dest="$tmp/root"

make -s -C "$root" install DESTDIR="$dest" >/dev/null

unit="$dest/etc/systemd/system/kmirror.service"

# Every installed unit passes systemd-analyze verify without a warning (an unknown or misspelt
# key is only a warning to systemd, and silently ignored at run time). The units name the
# installed path of the binary; the copies checked name the scratch install's. A template is
# checked as one instance of it.
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$tmp/verify"
  for u in "$dest"/etc/systemd/system/kmirror*.service; do
    name="$(basename "$u")"
    [ "$name" = "kmirror@.service" ] && name="kmirror@check.service"
    sed "s|/usr/local/bin/kmirror|$dest/usr/local/bin/kmirror|g" "$u" >"$tmp/verify/$name"
    if ! out="$(systemd-analyze verify "$tmp/verify/$name" 2>&1)" || [ -n "$out" ]; then
      echo "$out" >&2
      echo "systemd-check: systemd-analyze verify $(basename "$u") is not clean" >&2
      exit 1
    fi
    echo "systemd-analyze verify $(basename "$u"): ok"
  done
  [ -e "$dest/etc/systemd/system/kmirror@.service" ] || { echo "systemd-check: make install did not install kmirror@.service" >&2; exit 1; }
  grep -q '^RestartPreventExitStatus=78' "$unit" || { echo "systemd-check: kmirror.service restarts a configuration error (no RestartPreventExitStatus=78)" >&2; exit 1; }
  if grep -q '^ProcSubset=pid' "$dest"/etc/systemd/system/kmirror*.service; then
    echo "systemd-check: ProcSubset=pid hides /proc/stat (process_start_time_seconds)" >&2; exit 1
  fi
else
  echo "systemd-analyze missing: units not verified" >&2
fi
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
read -r -a argv <<<"$exec_start"
bin="${argv[0]}"
config=""
for i in "${!argv[@]}"; do
  if [ "${argv[$i]}" = "--config" ] || [ "${argv[$i]}" = "-c" ]; then config="${argv[$((i + 1))]}"; fi
done
[ -n "$config" ] || { echo "systemd-check: ExecStart names no --config: $exec_start" >&2; exit 1; }
grep -q '^DynamicUser=yes' "$unit" || echo "systemd-check: the unit no longer uses DynamicUser; checking as $user anyway" >&2

as_user() { setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups -- "$@"; }

echo "installed: $bin, $config ($(stat -c '%a %U:%G' "$dest$config"))"
if ! out="$(as_user "$dest$bin" validate --config "$dest$config" 2>&1)"; then
  echo "$out" | tail -n 5 >&2
  echo "systemd-check: the unit's user ($user here) cannot use the installed configuration $config" >&2
  exit 1
fi
echo "kmirror validate --config $config as $user: ok"

# A second install keeps an edited configuration.
echo "# edited" >>"$dest$config"
make -s -C "$root" install DESTDIR="$dest" >/dev/null
grep -q '^# edited' "$dest$config" || { echo "systemd-check: make install overwrote an existing $config" >&2; exit 1; }
echo "make install again: the edited $config is kept"

# Startup notification, once kmirror serves /startupz.
if ! command -v python3 >/dev/null || ! command -v curl >/dev/null; then
  echo "python3 or curl missing: startup notification not checked" >&2
  exit 0
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
sock="$tmp/notify"
python3 - "$sock" "$tmp/notified" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
import os; os.chmod(sys.argv[1], 0o777)
s.settimeout(30)
with open(sys.argv[2], "a") as out:
    try:
        while True:
            out.write(s.recv(4096).decode() + "\n"); out.flush()
    except socket.timeout:
        pass
PY
listener=$!
for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
# Both clusters on closed local ports: nothing answers, as when a site is down.
NOTIFY_SOCKET="$sock" KMIRROR_SOURCE_BOOTSTRAP=127.0.0.1:1 KMIRROR_TARGET_BOOTSTRAP=127.0.0.1:2 \
  KMIRROR_TELEMETRY_LISTEN="127.0.0.1:$port" \
  setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups -- "$dest$bin" run --config "$dest$config" >"$tmp/run.log" 2>&1 &
pid=$!
code=000
for _ in $(seq 1 50); do
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/startupz" || true)"
  [ "$code" = 200 ] || [ "$code" = 404 ] && break
  sleep 0.3
done
ready=""
for _ in $(seq 1 50); do
  grep -q '^READY=1' "$tmp/notified" 2>/dev/null && { ready=1; break; }
  sleep 0.3
done
readyz="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)"
# A stop while the clusters are unreachable is as prompt as any other (systemd's stop timeout).
kill -TERM "$pid" 2>/dev/null || true
stopped=""
for _ in $(seq 1 50); do
  kill -0 "$pid" 2>/dev/null || { stopped=1; break; }
  sleep 0.2
done
[ -n "$stopped" ] || kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=""
kill "$listener" 2>/dev/null || true
if [ "$code" != 200 ] || [ -z "$ready" ] || [ "$readyz" != 503 ] || [ -z "$stopped" ]; then
  tail -n 20 "$tmp/run.log" >&2
  echo "systemd-check: with both clusters down, want /startupz 200, READY=1, /readyz 503 and a stop within 10 s of SIGTERM;" \
    "got /startupz $code, READY=${ready:-no}, /readyz $readyz, stopped ${stopped:-no}" >&2
  exit 1
fi
echo "clusters down: /startupz 200, READY=1 sent, /readyz 503, stopped within 10 s of SIGTERM: ok"
