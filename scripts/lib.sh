# Shared helpers for Herald's scripts. Sourced, not run.

# Install Debian's package PACKAGE when the command CMD is missing:
# ensure_debian_command CMD PACKAGE [apt-get install options...].
ensure_debian_command() {
  local cmd=$1 pkg=$2
  shift 2
  if command -v "$cmd" >/dev/null 2>&1; then
    return 0
  fi
  echo "==> $cmd not found; installing Debian's $pkg"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" "$pkg" >/dev/null
  command -v "$cmd" >/dev/null 2>&1 || { echo "could not install $pkg" >&2; return 1; }
}

# Install Debian's redis-server when it is missing (tests and the demo start
# their own server on a free port; they never use a system-wide one).
ensure_redis_server() {
  # The package may start a system service on 6379; Herald's scripts don't use it.
  ensure_debian_command redis-server redis-server
}

# Install promtool (Debian's prometheus package, without its recommended
# node exporter) when it is missing. On Debian 12 that is 12 packages, about
# 21 MiB to download and 316 MiB on disk (213 MiB of it libjs-moment-timezone,
# for the server's web UI): about 17 s here, 8 s with the packages already
# downloaded. The package may start a Prometheus server on 9090 where systemd
# runs; scripts/ops-check.sh only uses promtool.
ensure_promtool() {
  ensure_debian_command promtool prometheus --no-install-recommends
}

# Print a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local p
  for _ in $(seq 1 200); do
    # Below the ephemeral range (32768+), where outbound sockets live.
    p=$(( 10000 + RANDOM % 22000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# Wait until a TCP port accepts connections.
wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$what did not come up on port $port" >&2
  return 1
}
