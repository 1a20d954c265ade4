#!/usr/bin/env bash
# cargo deny: advisories, licenses and bans (deny.toml), without network
# access beyond crates.io. Installs cargo-deny when missing.
#
# Advisories come from a local copy of the RustSec advisory database: the
# folder HERALD_ADVISORY_DB names (a `crates/` folder of RUSTSEC-*.md
# files). It is copied into a scratch git repository under target/deny,
# cargo-deny clones that (git's url.insteadOf turns the database's URL in
# deny.toml into the scratch copy), and the check itself runs --offline.
# When the database copy is absent the advisories check is skipped, said so
# loudly, and licenses and bans still run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

if ! cargo deny --version >/dev/null 2>&1; then
  echo "==> cargo-deny not found; installing (compiles from source, ~5 minutes on 2 cores)"
  start=$SECONDS
  cargo install cargo-deny --locked
  echo "==> cargo-deny installed in $((SECONDS - start)) s"
fi
cargo deny --version

db=${HERALD_ADVISORY_DB:-$(cd .. && pwd)/shared/data/advisory-db}
checks=(licenses bans)
skipped=""
if [ -d "$db/crates" ]; then
  work=$repo/target/deny
  rm -rf "$work"
  mkdir -p "$work"
  cp -R "$db" "$work/advisory-db"
  # The source may be read-only; the scratch copy must take a .git folder.
  chmod -R u+w "$work/advisory-db"
  git -C "$work/advisory-db" init -q -b main
  git -C "$work/advisory-db" add -A
  git -C "$work/advisory-db" -c user.name=herald -c user.email=herald@localhost \
    commit -q -m "advisory database copy"
  # deny.toml names the upstream URL (cargo-deny wants a host name in it);
  # git fetches it from the scratch copy instead, for this script only.
  export GIT_CONFIG_COUNT=1
  export GIT_CONFIG_KEY_0="url.file://$work/advisory-db.insteadOf"
  export GIT_CONFIG_VALUE_0="https://github.com/rustsec/advisory-db"
  export HERALD_DENY_DB_ROOT=$work/dbs
  cargo deny fetch db
  echo "==> advisories from the advisory database copy (HERALD_ADVISORY_DB=$db)"
  checks=(advisories "${checks[@]}")
else
  echo "==> SKIPPED: the advisories check; the advisory database copy (HERALD_ADVISORY_DB) is absent at $db"
  echo "==> licenses and bans still run"
  skipped=1
fi

# The check reads cargo metadata offline: fetch every platform's crates first.
cargo fetch --locked --quiet
# Without the inclusion graphs (rerun by hand without the flag to see how a
# crate comes in): each duplicate version's graph is a screenful.
cargo deny --offline --locked check --hide-inclusion-graph "${checks[@]}"
if [ -n "$skipped" ]; then
  echo "==> cargo deny: advisories NOT checked (the advisory database copy, HERALD_ADVISORY_DB, is absent)"
fi
