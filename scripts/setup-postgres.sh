#!/usr/bin/env bash
# Installs PostgreSQL 15 and the pgvector 0.8.0 extension for strata's Postgres serving
# backend and its tests (crates/serving-postgres). Idempotent: when both are in place it only
# checks them and exits.
#
# PostgreSQL comes from the distribution (postgresql-15, postgresql-server-dev-15); pgvector is
# built from Debian trixie's source package, fetched with a private apt configuration (its own
# sources list and lists directory) so the system's apt sources are left unchanged.
#
#   PG_VERSION          PostgreSQL major version (default 15)
#   PGVECTOR_VERSION    pgvector version wanted (default 0.8.0)
set -euo pipefail

pg_version="${PG_VERSION:-15}"
want="${PGVECTOR_VERSION:-0.8.0}"
pg_bin="/usr/lib/postgresql/$pg_version/bin"
pg_config="$pg_bin/pg_config"

die() { echo "setup-postgres: error: $*" >&2; exit 1; }
say() { echo "setup-postgres: $*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "run as root (or install sudo) to install packages: $*"
  fi
}

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
}

# 1. PostgreSQL server and the headers/PGXS needed to build extensions.
if [ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/postgres" ] && [ -x "$pg_config" ] \
   && [ -f "$("$pg_config" --pgxs)" ] && [ -f "$("$pg_config" --includedir-server)/postgres.h" ]; then
  say "PostgreSQL $pg_version present ($("$pg_bin/postgres" --version))"
else
  command -v apt-get >/dev/null || die "PostgreSQL $pg_version is missing and apt-get is not available; install postgresql-$pg_version and postgresql-server-dev-$pg_version"
  say "installing postgresql-$pg_version and postgresql-server-dev-$pg_version"
  apt_update_once
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "postgresql-$pg_version" "postgresql-server-dev-$pg_version" make gcc dpkg-dev libc6-dev \
    || die "apt-get could not install PostgreSQL $pg_version"
  # Debian's postgresql-common creates and starts a default cluster; the tests start their own.
fi
id postgres >/dev/null 2>&1 || die "the postgres system user is missing (it comes with postgresql-common)"

# 2. pgvector.
ext_dir="$("$pg_config" --sharedir)/extension"
lib_dir="$("$pg_config" --pkglibdir)"
installed=""
if [ -f "$ext_dir/vector.control" ] && [ -f "$lib_dir/vector.so" ]; then
  installed="$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$ext_dir/vector.control")"
fi
if [ "$installed" = "$want" ]; then
  say "pgvector $want present in $lib_dir"
  exit 0
fi
[ -n "$installed" ] && say "pgvector $installed found, $want wanted: rebuilding"

command -v apt-get >/dev/null || die "apt-get is required to fetch the pgvector source package"
for tool in make gcc dpkg-source; do
  if ! command -v "$tool" >/dev/null; then
    apt_update_once
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      make gcc dpkg-dev libc6-dev || die "apt-get could not install the build tools"
    break
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # apt's download user (_apt) must be able to write the fetched files
mkdir -p "$work/lists/partial" "$work/src"
chmod 777 "$work/lists/partial" "$work/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || die "$keyring is missing (package debian-archive-keyring)"
echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian trixie main" > "$work/sources.list"
private_apt=(
  -o "Dir::Etc::sourcelist=$work/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists"
  -o "APT::Get::List-Cleanup=0"
)
say "fetching the pgvector source package from Debian trixie"
apt-get "${private_apt[@]}" update -qq || die "apt-get update of the private trixie deb-src list failed"
(cd "$work/src" && apt-get "${private_apt[@]}" source -qq "pgvector=$want-*" 2>/dev/null \
   || apt-get "${private_apt[@]}" source -qq pgvector) \
  || die "apt-get source pgvector failed"
src="$(find "$work/src" -maxdepth 1 -mindepth 1 -type d -name 'pgvector-*' | head -n1)"
[ -n "$src" ] || die "the pgvector source package unpacked no pgvector-* folder"
got="$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$src/vector.control")"
[ "$got" = "$want" ] || die "trixie's pgvector source is version $got, expected $want"

say "building pgvector $got against $("$pg_config" --version)"
# with_llvm=no: skip the JIT bitcode (it would need clang); the extension itself is unchanged.
make -s -C "$src" -j"$(nproc)" PG_CONFIG="$pg_config" with_llvm=no >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; die "building pgvector failed"; }
as_root make -s -C "$src" PG_CONFIG="$pg_config" with_llvm=no install >>"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; die "installing pgvector failed"; }
[ -f "$lib_dir/vector.so" ] || die "pgvector installed no $lib_dir/vector.so"
say "pgvector $got installed in $lib_dir"
