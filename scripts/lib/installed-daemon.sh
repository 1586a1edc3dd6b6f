# Shell functions for the package checks (sourced, not run): the installed
# daemon started as the unit runs it (its user, an empty environment, the
# installed config) but on a free port, and calls to its API with the key
# it generated. The caller defines fail() and sets $work, a folder of its
# own (mode 755, so the service user can read the config copy there).

# daemon_start [TRIES]: starts /usr/bin/sightline; returns once the API
# answers with the key, polled every 0.5 s TRIES times (default 120), else
# fails. Sets $port; the pid is kept in $work/pid.
daemon_start() {
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  sed "s/^listen = .*/listen = \"127.0.0.1:$port\"/" /etc/sightline/sightline.toml > "$work/run.toml"
  chmod 644 "$work/run.toml"
  (cd / && exec env -i PATH=/usr/bin:/bin setpriv --reuid=sightline --regid=sightline --init-groups \
    /usr/bin/sightline run --config "$work/run.toml") > "$work/daemon.log" 2>&1 &
  echo $! > "$work/pid"
  for _ in $(seq 1 "${1:-120}"); do
    if [ -s /var/lib/sightline/api-key ] && daemon_api GET status >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  fail "the installed daemon did not answer with its generated key: $(tail -5 "$work/daemon.log")"
}

# Stops the daemon daemon_start started, if it runs.
daemon_stop() {
  [ -s "$work/pid" ] || return 0
  kill "$(cat "$work/pid")" 2>/dev/null || true
  wait "$(cat "$work/pid")" 2>/dev/null || true
  rm -f "$work/pid"
}

# daemon_api METHOD PATH [JSON]: prints the reply's body; fails on an error status.
daemon_api() {
  python3 - "$port" "$@" <<'EOF'
import sys, urllib.request
port, method, path = sys.argv[1:4]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
key = open("/var/lib/sightline/api-key").read().strip()
req = urllib.request.Request(f"http://127.0.0.1:{port}/{path}", data=body, method=method,
                             headers={"x-access-token": key, "content-type": "application/json"})
print(urllib.request.urlopen(req, timeout=5).read().decode())
EOF
}
