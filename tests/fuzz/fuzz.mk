# tests/fuzz/fuzz.mk: libFuzzer targets and memcheck over the unit tests.
# Included at the end of the top-level Makefile (it uses BASE_CFLAGS,
# BASE_LDFLAGS, LIBS, SRCS, SCHEMA_VERSION and UNIT_SRCS from there).
#   make fuzz-build       clang + libFuzzer + ASan/UBSan binaries in build/fuzz/
#   make fuzz-smoke       every target for FUZZ_SMOKE_SECONDS (default 20) on a
#                         copy of its corpus; fails on any crash, leak or
#                         sanitizer report; appends "P F" to build/test-results
#   make fuzz             the same for FUZZ_SECONDS (default 300) per target
#   make fuzz-seeds       regenerates corpus/fuzz_aead_open/ (rows sealed under
#                         the fuzzing key; commit the result)
#   make test-valgrind    BUILD=debug unit tests, then one integration pass
#                         with the service, under valgrind memcheck
# The service sources are compiled again with clang (never gcc's objects):
# coverage instrumentation must reach them, and the build proves they
# compile with clang -std=c11 under the Makefile's own -D and -W flags.

FUZZ_CC ?= clang-14
FUZZ_OUT := build/fuzz
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := fuzz_json_tokenize fuzz_card fuzz_router fuzz_token fuzz_headers fuzz_aead_open \
	fuzz_client_addr fuzz_frame_query fuzz_origin fuzz_csv fuzz_expiry fuzz_pan_scan fuzz_probe \
	fuzz_mysql_url fuzz_relay_template fuzz_json_relay fuzz_relay_redact fuzz_relay_dest \
	fuzz_list_query fuzz_json_update
# Every service module but main.c goes into one archive: the linker takes
# only what a target reaches (auth.c pulls the store, envelope, log, token;
# router handlers are stubbed in fuzz_router.c, so api_tokens.c stays out),
# so the list needs no upkeep as modules grow dependencies, and fuzz-build
# doubles as the check that all of them compile with clang.
FUZZ_SRCS := $(filter-out service/main.c,$(SRCS))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS = $(BASE_CFLAGS) -DCV_SCHEMA_VERSION=$(SCHEMA_VERSION) -O1 -g -fno-omit-frame-pointer \
	$(FUZZ_SAN)
FUZZ_LIBS := $(LIBS)
FUZZ_OBJS := $(FUZZ_SRCS:service/%.c=$(FUZZ_OUT)/obj/%.o)
FUZZ_ASSETS_OBJ := $(FUZZ_OUT)/obj/elements_assets.o
FUZZ_MIGRATIONS_OBJ := $(FUZZ_OUT)/obj/migrations_embedded.o
FUZZ_LIB := $(FUZZ_OUT)/libcardvault-fuzz.a
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_OUT)/%)

.PHONY: fuzz-build fuzz-smoke fuzz fuzz-seeds test-valgrind

$(FUZZ_OBJS): $(FUZZ_OUT)/obj/%.o: service/%.c
	@mkdir -p $(dir $@)
	@echo "CC fuzz $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_ASSETS_OBJ): $(ELEMENTS_GEN) service/elements_assets.h
	@mkdir -p $(dir $@)
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -Iservice -c $< -o $@

$(FUZZ_MIGRATIONS_OBJ): $(MIGRATIONS_GEN) service/migrations_embedded.h
	@mkdir -p $(dir $@)
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -Iservice -c $< -o $@

$(FUZZ_LIB): $(FUZZ_OBJS) $(FUZZ_ASSETS_OBJ) $(FUZZ_MIGRATIONS_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(FUZZ_BINS): $(FUZZ_OUT)/%: tests/fuzz/%.c $(FUZZ_LIB) $(wildcard tests/fuzz/*.h)
	@echo "LD fuzz $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itests/fuzz -o $@ $< $(FUZZ_LIB) \
		$(BASE_LDFLAGS) $(FUZZ_LIBS)

$(FUZZ_OUT)/gen_aead_seeds: tests/fuzz/gen_aead_seeds.c $(FUZZ_LIB) tests/fuzz/fuzz_aead_key.h
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -Itests/fuzz -o $@ $< $(FUZZ_LIB) \
		$(BASE_LDFLAGS) $(FUZZ_LIBS)

$(FUZZ_OUT)/obj/migrate.o: $(wildcard migrations/*.sql)

-include $(FUZZ_OBJS:.o=.d)

fuzz-build: $(FUZZ_BINS)

fuzz-smoke: fuzz-build
	@tests/fuzz/run-fuzz.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

fuzz: fuzz-build
	@tests/fuzz/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-seeds: $(FUZZ_OUT)/gen_aead_seeds
	@mkdir -p tests/fuzz/corpus/fuzz_aead_open
	$(FUZZ_OUT)/gen_aead_seeds tests/fuzz/corpus/fuzz_aead_open

VALGRIND_BINS := $(UNIT_SRCS:tests/unit/%.c=build/debug/tests/%)

# Unit tests under memcheck, then one integration pass with the service
# itself (debug build) under memcheck: every command run.sh runs (migrate,
# merchant create, serve) exits 97 on a memory error or a definite leak.
test-valgrind:
	@rm -f build/test-results; st=0; \
	$(MAKE) --no-print-directory BUILD=debug $(VALGRIND_BINS) build/debug/cardvault \
		build/debug/tests/itest || st=1; \
	tests/fuzz/run-valgrind.sh $(VALGRIND_BINS) || st=1; \
	tests/lib/with-postgres.sh tests/integration/run.sh tests/fuzz/valgrind-service.sh \
		build/debug/tests/itest || st=1; \
	grep -L "ERROR SUMMARY: 0 errors" build/valgrind/service-*.log 2>/dev/null | sed 's/^/memcheck errors in /'; \
	tests/lib/summary.sh || st=1; exit $$st
