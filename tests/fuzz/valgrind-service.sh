#!/usr/bin/env bash
# valgrind-service.sh CARDVAULT_BIN ARGS...: runs the service binary under
# valgrind memcheck, for the integration pass of `make test-valgrind`
# (tests/integration/run.sh calls it like the plain binary). A memory error or
# a definitely lost block makes the command exit 97, which run.sh reports as a
# failed check. Each run's report goes to build/valgrind/service-PID.log.
bin=$(dirname "$(realpath "$0")")/../../build/debug/cardvault
mkdir -p "$(dirname "$0")/../../build/valgrind"
exec valgrind --error-exitcode=97 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --num-callers=30 \
  --log-file="$(dirname "$0")/../../build/valgrind/service-%p.log" "$bin" "$@"
