# bench/bench.mk: `make bench` (3 interleaved rounds, about 6-7 minutes with the
# perf profile) and `make bench-quick` (2 rounds, under 2 minutes); BENCH_ROUNDS
# sets the number of rounds. See bench/README.md. Included from the top-level Makefile:
#
#   include bench/bench.mk
#
# bench/run.sh also builds through this file on its own
# (`make -f Makefile -f bench/bench.mk bench-tools`), so the guard below keeps
# a second inclusion harmless.
ifndef CV_BENCH_MK_INCLUDED
CV_BENCH_MK_INCLUDED := 1
# Wherever this file is included, it does not change the default goal (`make` = `make all`).
cv_bench_saved_goal := $(.DEFAULT_GOAL)

BENCH_OUT := build/bench
# The bare libmicrohttpd endpoint is built like the release service
# (BASE_CFLAGS/BASE_LDFLAGS of the Makefile and the release mode flags), so
# its numbers are the HTTP limit of the service's own build.
BENCH_CFLAGS := $(BASE_CFLAGS) -O2 -g -D_FORTIFY_SOURCE=2
BENCH_LDFLAGS := $(BASE_LDFLAGS)

.PHONY: bench bench-quick bench-tools bench-cluster bench-relay bench-relay-client bench-relay-client-quick

bench-tools: $(BENCH_OUT)/bare_mhd

$(BENCH_OUT)/bare_mhd: bench/bare_mhd.c bench/bench.mk
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(BENCH_LDFLAGS) -lmicrohttpd

# The full run profiles the service too (bench/perf_split.py) when perf is installed.
BENCH_PROFILE_FLAG := $(if $(shell command -v perf 2>/dev/null),--profile,)

bench: bench-tools
	@$(MAKE) --no-print-directory BUILD=release all
	bench/run.sh $(BENCH_PROFILE_FLAG)

bench-quick: bench-tools
	@$(MAKE) --no-print-directory BUILD=release all
	bench/run.sh --quick

# The cluster of `make cluster` (two vaults behind HAProxy, a synchronous
# standby) against the same HAProxy in front of bare_mhd and pgbench's
# one-row insert on its primary (bench/cluster.sh; about 3 minutes).
bench-cluster: bench-tools
	@$(MAKE) --no-print-directory BUILD=release all
	bench/cluster.sh build/release/cardvault

# The relay against the fake processor, with the processor's own answer as
# the limit (bench/relay.sh).
bench-relay:
	@$(MAKE) --no-print-directory BUILD=release all
	bench/relay.sh build/release/cardvault

# The relay client against the fake processor (bench/relay_client.sh): its rate and
# latency next to a bare libcurl client's at the same fake in the same run.
# Built with the release objects (service code, no database).
$(BENCH_OUT)/relay_client: bench/relay_client.c
	@$(MAKE) --no-print-directory BUILD=release all
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(filter-out build/release/obj/main.o,\
		$(wildcard build/release/obj/*.o)) $(BENCH_LDFLAGS) $(LIBS)

bench-relay-client-quick: $(BENCH_OUT)/relay_client
	bench/relay_client.sh $(BENCH_OUT)/relay_client 3 4

bench-relay-client: $(BENCH_OUT)/relay_client
	bench/relay_client.sh $(BENCH_OUT)/relay_client 10 8

.DEFAULT_GOAL := $(cv_bench_saved_goal)
endif
