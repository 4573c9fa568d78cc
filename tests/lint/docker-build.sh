#!/usr/bin/env bash
# The Docker image's build, reproduced without a Docker engine.
#
#   tests/lint/docker-build.sh
#
# This machine (and CI) has no Docker engine, so docker/Dockerfile cannot be
# built here. What can go wrong in its build stage is mostly "the build needs
# a file the Dockerfile does not copy" (a Makefile include, a generated asset,
# a header outside include/) or "the runtime stage lacks a library the binary
# links". This script checks both by doing what the Dockerfile does:
#
#   1. copy exactly the paths the build stage's COPY lines name (from a clean
#      `git archive` of HEAD plus the work tree's changes to tracked files,
#      never build/ or node_modules) into an empty directory;
#   2. run the build stage's RUN lines after WORKDIR there, with /out mapped
#      to a private directory;
#   3. run the installed binary's --help;
#   4. map every shared library the binary needs (ELF NEEDED) to its Debian
#      package and require that package in the runtime stage's apt-get list
#      (libc6 is in every Debian image);
#   5. require every -dev package the build stage installs to be installed
#      here, so a missing one fails here as it would in the image.
#
# Prints ok/not ok lines and "docker-build: N passed, N failed"; appends
# "P F" to build/test-results.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DF=docker/Dockerfile
pass=0; fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $*"; fail=$((fail + 1)); }
finish() {
  echo "docker-build: $pass passed, $fail failed"
  mkdir -p build && echo "$pass $fail" >>build/test-results
  [ "$fail" -eq 0 ]
  exit
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The Dockerfile with continuation lines joined and comments dropped, one
# instruction per line; stage 1 is the build stage, stage 2 the runtime one.
awk '
  /^[[:space:]]*#/ { next }
  { line = line $0 }
  /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, " ", line); next }
  { if (line ~ /[^[:space:]]/) print line; line = "" }
' "$DF" >"$tmp/instructions"
awk '/^FROM /{ stage++ } { print > ("'"$tmp"'/stage" stage) }' "$tmp/instructions"
[ -s "$tmp/stage1" ] && [ -s "$tmp/stage2" ] || { not_ok "Dockerfile has a build and a runtime stage"; finish; }

# 1. The build context: tracked files as they are in the work tree.
ctx=$tmp/context
mkdir -p "$ctx"
git ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -a -t "$ctx" 2>/dev/null)
src=$tmp/src
mkdir -p "$src"
copies=0
while read -r _ from to; do
  case "$from" in --*) continue ;; esac
  if [ ! -e "$ctx/$from" ]; then
    not_ok "COPY $from: not in the repository"
    continue
  fi
  case "$to" in
    ./ | .) cp -a "$ctx/$from" "$src/" ;;
    */) mkdir -p "$src/$to" && cp -a "$ctx/$from"/. "$src/$to" ;;
    *) mkdir -p "$(dirname "$src/$to")" && cp -a "$ctx/$from" "$src/$to" ;;
  esac
  copies=$((copies + 1))
done < <(grep '^COPY ' "$tmp/stage1")
[ "$copies" -gt 0 ] && ok "build stage copies $copies paths from the repository" \
  || not_ok "build stage copies nothing"

# 5 (first, so a missing package explains a failed build): -dev packages.
build_pkgs=$(grep -o 'apt-get install[^&]*' "$tmp/stage1" | tr ' ' '\n' | grep -v -e '^-' -e '^apt-get$' -e '^install$' -e '^$')
missing=""
for p in $build_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -z "$missing" ]; then ok "every build-stage package is installed here ($(echo $build_pkgs | wc -w))"
else not_ok "build-stage packages not installed here:$missing (run make deps)"; fi

# 2. The RUN lines after WORKDIR, in order, /out mapped to $tmp/out.
out=$tmp/out
runs=$(awk '/^WORKDIR /{ w = 1; next } w && /^RUN /{ sub(/^RUN /, ""); print }' "$tmp/stage1")
if [ -z "$runs" ]; then
  not_ok "build stage has RUN lines after WORKDIR"
else
  if (cd "$src" && while IFS= read -r cmd; do
        bash -euo pipefail -c "${cmd//\/out/$out}" || exit 1
      done <<<"$runs") >"$tmp/build.log" 2>&1; then
    ok "build stage RUN lines succeed on exactly the copied files"
  else
    not_ok "build stage RUN lines fail on exactly the copied files:"
    tail -n 15 "$tmp/build.log" | sed 's/^/#   /'
    finish
  fi
fi

# 3. The binary runs.
bin=$out/usr/local/bin/cardvault
if [ -x "$bin" ] && "$bin" --help >"$tmp/help" 2>&1 && grep -q serve "$tmp/help"; then
  ok "the installed binary runs (cardvault --help names serve)"
else
  not_ok "the installed binary runs (cardvault --help)"
  head -n 5 "$tmp/help" 2>/dev/null | sed 's/^/#   /'
fi
n_mig=$(find "$out/usr/share/cardvault/migrations" -name '*.sql' 2>/dev/null | wc -l)
n_repo=$(find migrations -name '*.sql' | wc -l)
[ "$n_mig" -eq "$n_repo" ] && ok "all $n_repo migrations installed beside the binary" \
  || not_ok "migrations installed: $n_mig of $n_repo"

# 4. Runtime libraries: each NEEDED library's package is in the runtime stage.
runtime_pkgs=" $(grep -o 'apt-get install[^&]*' "$tmp/stage2" | tr '\n' ' ') libc6 "
if [ -x "$bin" ]; then
  for lib in $(readelf -d "$bin" | awk '/NEEDED/ { gsub(/[][]/, "", $5); print $5 }'); do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
    real=$(readlink -f "$path")
    pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null)
    pkg=${pkg%%:*}
    if [ -z "$pkg" ]; then
      not_ok "runtime library $lib: no Debian package owns $real"
    elif [[ "$runtime_pkgs" == *" $pkg "* ]]; then
      ok "runtime stage installs $pkg ($lib)"
    else
      not_ok "runtime stage lacks $pkg, which provides $lib"
    fi
  done
fi
finish
