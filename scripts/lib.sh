# Shared helpers for Herald's scripts. Sourced, not run.

# Install Debian's redis-server when it is missing (tests and the demo start
# their own server on a free port; they never use a system-wide one).
ensure_redis_server() {
  if command -v redis-server >/dev/null 2>&1; then
    return 0
  fi
  echo "==> redis-server not found; installing Debian's redis-server"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  # The package may start a system service on 6379; Herald's scripts don't use it.
  command -v redis-server >/dev/null 2>&1 || { echo "could not install redis-server" >&2; return 1; }
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
