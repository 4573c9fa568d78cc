# cardvault build. No autotools: one Makefile, objects in build/$(BUILD)/.
#   make            release build of ./cardvault (-O2, FORTIFY, PIE, RELRO/now)
#   make run        deps + build + private PostgreSQL + demo merchant + serve
#   make test       deps + build + every test against a throwaway PostgreSQL
#   make test-asan  the same suite under AddressSanitizer + UBSan
#   make browser    the card fields end to end in headless Chromium (tests/browser)
#   make lint       cppcheck, clang-tidy, banned functions, format-check, architecture, SQL
BUILD ?= release

CC ?= cc
WARN := -Wall -Wextra -Werror -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wcast-qual -Wwrite-strings -Wformat=2 -Wvla -Wimplicit-fallthrough \
        -Wundef
BASE_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude \
        -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql) \
        -I/usr/include/p11-kit-1 \
        -I$(shell mariadb_config --variable=pkgincludedir 2>/dev/null || echo /usr/include/mariadb) \
        -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED \
        $(WARN) -fno-common -fstack-protector-strong -fstack-clash-protection -fPIE -pthread
BASE_LDFLAGS := -pie -Wl,-z,relro -Wl,-z,now -Wl,-z,noexecstack -pthread
LIBS := -lmicrohttpd -lcrypto -lpq -ljansson -lcurl -lz -lmariadb -lm -ldl

ifeq ($(BUILD),release)
  MODE_CFLAGS := -O2 -g -D_FORTIFY_SOURCE=2
else ifeq ($(BUILD),debug)
  MODE_CFLAGS := -O0 -g3
else ifeq ($(BUILD),asan)
  MODE_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  MODE_LDFLAGS := -fsanitize=address,undefined
else
  $(error BUILD must be release, debug or asan)
endif

# The schema version this build needs: the number of the newest migration file.
SCHEMA_VERSION := $(shell ls migrations/*.sql 2>/dev/null | sed -n 's|.*/0*\([0-9][0-9]*\)_.*|\1|p' | sort -n | tail -1)
CFLAGS := $(BASE_CFLAGS) $(MODE_CFLAGS) -DCV_SCHEMA_VERSION=$(SCHEMA_VERSION) $(EXTRA_CFLAGS)
LDFLAGS := $(BASE_LDFLAGS) $(MODE_LDFLAGS)

OUT := build/$(BUILD)

# The version `cardvault --version` and the cardvault_build_info metric show:
# `make CV_VERSION=X` when given (a release or image build), else what
# `git describe --always --dirty` says in a git checkout, else VERSION (the
# Docker build stage has no .git and may have no git at all). It reaches
# main.o alone, through build/gen/version.txt, which is rewritten only when
# the version changes so that main.o is recompiled then and only then.
VERSION := 0.1.0
ifeq ($(strip $(CV_VERSION)),)
  CV_VERSION := $(shell git rev-parse --git-dir >/dev/null 2>&1 && git describe --always --dirty 2>/dev/null)
endif
ifeq ($(strip $(CV_VERSION)),)
  CV_VERSION := $(VERSION)
endif
ifneq ($(shell printf '%s' '$(CV_VERSION)' | tr -d 'A-Za-z0-9._+-'),)
  $(error CV_VERSION may hold only letters, digits and . _ + -)
endif
VERSION_STAMP := build/gen/version.txt
SRCS := $(sort $(wildcard service/*.c))
# The card fields' static files (docs/elements.md), compiled in as byte
# arrays by service/elements/embed.sh (od and sed; no npm, no build step of
# their own). The generated source is the same for every BUILD.
ELEMENTS_ASSETS := service/elements/elements.js service/elements/frame.js \
        service/elements/frame.css
ELEMENTS_GEN := build/gen/elements_assets.c
# migrations/*.sql, compiled in the same way by service/migrations_embed.sh,
# so `cardvault migrate` needs nothing beside the binary (docs/operations.md).
MIGRATION_FILES := $(sort $(wildcard migrations/*.sql))
MIGRATIONS_GEN := build/gen/migrations_embedded.c
OBJS := $(SRCS:service/%.c=$(OUT)/obj/%.o) $(OUT)/obj/elements_assets.o \
        $(OUT)/obj/migrations_embedded.o
LIB_OBJS := $(filter-out $(OUT)/obj/main.o,$(OBJS))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(OUT)/tests/%)
ITEST_BIN := $(OUT)/tests/itest
# Service code against the integration database (tests/db): run by itest.
DBTEST_BINS := $(OUT)/tests/db/test_pipeline
RELAY_TEST_BIN := $(OUT)/tests/relay/test_relay_client

.PHONY: install uninstall test-install
.PHONY: all deps run test cluster test-cluster client-ts api-docs test-asan unit itest relay-client contract browser scenarios lint-sql test-storage-proof \
        test-import-large \
        clean format format-check lint lint-cppcheck lint-tidy lint-banned lint-arch
all: $(OUT)/cardvault
ifeq ($(BUILD),release)
all: cardvault
cardvault: $(OUT)/cardvault
	@cp $< $@
endif

$(OUT)/obj/%.o: service/%.c
	@mkdir -p $(dir $@)
	@echo "CC $(BUILD) $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(ELEMENTS_GEN): $(ELEMENTS_ASSETS) service/elements/embed.sh
	@mkdir -p $(dir $@)
	@service/elements/embed.sh $(ELEMENTS_ASSETS) > $@.tmp && mv $@.tmp $@

$(OUT)/obj/elements_assets.o: $(ELEMENTS_GEN) service/elements_assets.h
	@mkdir -p $(dir $@)
	@echo "CC $(BUILD) $<"
	@$(CC) $(CFLAGS) -Iservice -c $< -o $@

$(MIGRATIONS_GEN): $(MIGRATION_FILES) service/migrations_embed.sh
	@mkdir -p $(dir $@)
	@service/migrations_embed.sh $(MIGRATION_FILES) > $@.tmp && mv $@.tmp $@

$(OUT)/obj/migrations_embedded.o: $(MIGRATIONS_GEN) service/migrations_embedded.h
	@mkdir -p $(dir $@)
	@echo "CC $(BUILD) $<"
	@$(CC) $(CFLAGS) -Iservice -c $< -o $@

$(OUT)/cardvault: $(OBJS)
	@echo "LD $(BUILD) $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(OUT)/tests/%: tests/unit/%.c $(LIB_OBJS) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	@echo "LD $(BUILD) $@"
	@$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LIBS)

# A black-box HTTP client: it links no service code.
$(ITEST_BIN): $(wildcard tests/integration/*.c tests/integration/*.h) tests/unit/check.h
	@mkdir -p $(dir $@)
	@echo "LD $(BUILD) $@"
	@$(CC) $(CFLAGS) -Itests/unit -Itests/integration -o $@ $(wildcard tests/integration/*.c) \
		$(LDFLAGS) -lcurl -ljansson

$(OUT)/tests/db/%: tests/db/%.c $(LIB_OBJS) tests/unit/check.h
	@mkdir -p $(dir $@)
	@echo "LD $(BUILD) $@"
	@$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LIBS)

# The relay client against the fake processor (tests/relay): service code,
# no database.
$(RELAY_TEST_BIN): tests/relay/test_relay_client.c $(LIB_OBJS) tests/unit/check.h
	@mkdir -p $(dir $@)
	@echo "LD $(BUILD) $@"
	@$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LIBS)

$(OUT)/obj/migrate.o: $(wildcard migrations/*.sql)

$(VERSION_STAMP): FORCE
	@mkdir -p $(dir $@)
	@printf '%s\n' '$(CV_VERSION)' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(OUT)/obj/main.o: $(VERSION_STAMP)
$(OUT)/obj/main.o: CFLAGS += -DCV_VERSION='"$(CV_VERSION)"'

-include $(OBJS:.o=.d)

deps:
	@tests/lib/deps.sh

# What `make run` needs, without the test tool chain.
deps-run:
	@tests/lib/deps.sh run

# Unit tests: pure modules, no database. Prints "N passed, N failed" per binary.
unit: $(UNIT_BINS)
	@tests/lib/run-unit.sh $(UNIT_BINS)

# The relay's outbound client against the fake processor over mutual TLS
# (tests/relay/run.sh: a fresh test PKI, three fakes, no database).
relay-client: $(RELAY_TEST_BIN)
	@tests/relay/run.sh $(RELAY_TEST_BIN)

# Integration + storage-policy tests against a running service on a throwaway
# cluster (pg_virtualenv). CV_PRISM=1 sends the HTTP suite through Prism.
itest: $(OUT)/cardvault $(ITEST_BIN) $(DBTEST_BINS)
	@CV_DBTEST_BINS="$(DBTEST_BINS)" tests/lib/with-postgres.sh tests/integration/run.sh \
		$(OUT)/cardvault $(ITEST_BIN)

# The packaged TypeScript client (docs/clients/typescript): types generated from
# openapi.yaml, compiled with tsc --strict, packed into build/clients/typescript/*.tgz.
client-ts:
	@tests/clients/build-ts.sh

# The API reference rendered from openapi.yaml (Redocly): build/api-docs/index.html.
api-docs:
	@tests/contract/api-docs.sh build/api-docs/index.html

# OpenAPI lint and the typed-client round trip through Prism (tests/contract).
contract: $(OUT)/cardvault
	@tests/contract/run.sh $(OUT)/cardvault

# The card fields end to end in headless Chromium (Debian's chromium, playwright-core, axe-core;
# tests/browser/run.sh): a test shop and another site on their own origins, a private PostgreSQL.
# Screenshots in build/browser-artifacts/.
browser: $(OUT)/cardvault
	@tests/browser/run.sh $(OUT)/cardvault

# Scenario scripts: each brings its own private PostgreSQL cluster.
SCENARIOS := audit audit-tail idempotency runtime keys key-commands faults isolation abuse row-integrity \
             storage-proof slow-clients heap-scan auth-throttle elements import-scan ops \
             scan-mysql relay tokens-lifecycle syncrep client-ts tls-reload async make-run
PROOF_CARDS ?= 200
scenarios: $(OUT)/cardvault
	@st=0; for s in $(SCENARIOS); do \
	  if [ -x tests/scenarios/$$s.sh ]; then echo "== scenario $$s"; \
	    PROOF_CARDS=$(PROOF_CARDS) tests/scenarios/$$s.sh $(OUT)/cardvault || st=1; \
	  else echo "== scenario $$s: missing"; echo "0 1" >> build/test-results; st=1; fi; \
	done; exit $$st

# The no-plaintext-anywhere proof at full size (1,000 cards).
test-storage-proof: $(OUT)/cardvault
	@PROOF_CARDS=1000 tests/scenarios/storage-proof.sh $(OUT)/cardvault

# The import scenario with a 200,000-row interrupted and resumed CSV import.
test-import-large: $(OUT)/cardvault
	@IMPORT_ROWS=200000 tests/scenarios/import-scan.sh $(OUT)/cardvault

# Every SQL touching tenant tables carries its merchant_id predicate.
lint-sql:
	@tests/lint/sql-merchant-predicate.sh

# Every suite runs even when an earlier one failed; the last line is the total.
# Release build: everything, the integration suite through Prism's validating
# proxy. ASan+UBSan build: unit tests and the integration suite again.
test: deps
	@rm -f build/test-results; st=0; \
	$(MAKE) -k --no-print-directory BUILD=release all unit || st=1; \
	CV_PRISM=1 $(MAKE) --no-print-directory BUILD=release itest || st=1; \
	$(MAKE) -k --no-print-directory BUILD=release contract browser scenarios || st=1; \
	$(MAKE) --no-print-directory BUILD=release test-cluster || st=1; \
	$(MAKE) --no-print-directory BUILD=release test-install || st=1; \
	$(MAKE) --no-print-directory BUILD=release lint || st=1; \
	$(MAKE) --no-print-directory docker-build-check || st=1; \
	$(MAKE) -k --no-print-directory BUILD=asan unit itest relay-client || st=1; \
	$(MAKE) --no-print-directory FUZZ_SMOKE_SECONDS=5 fuzz-smoke || st=1; \
	tests/lib/summary.sh || st=1; exit $$st

test-asan: deps
	@rm -f build/test-results; st=0; \
	$(MAKE) --no-print-directory BUILD=asan unit itest relay-client scenarios || st=1; \
	tests/lib/summary.sh || st=1; exit $$st

run: deps-run
	@$(MAKE) --no-print-directory BUILD=release all
	@docker/local-run.sh

# `make install` (PREFIX, DESTDIR honoured): the binary (migrations compiled
# in), the systemd units with their paths set to PREFIX, and the docs.
# docs/operations.md, "Running under systemd", goes from here to a running
# vault. `make uninstall` removes the same files.
PREFIX ?= /usr/local
BINDIR := $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR := $(PREFIX)/share/doc/cardvault
UNITS := service/systemd/cardvault.service service/systemd/cardvault-migrate.service
install: $(OUT)/cardvault
	install -D -m 0755 $(OUT)/cardvault $(DESTDIR)$(BINDIR)/cardvault
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	@for u in $(UNITS); do \
	  sed -e 's|/usr/local/bin/cardvault|$(BINDIR)/cardvault|g' \
	      -e 's|/usr/local/share/doc/cardvault|$(DOCDIR)|g' $$u > $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp && \
	  mv $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done
	install -m 0644 README.md docs/*.md openapi.yaml $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/cardvault $(UNITS:service/systemd/%=$(DESTDIR)$(UNITDIR)/%)
	rm -rf $(DESTDIR)$(DOCDIR)

# The install layout, the installed binary away from the source tree, and the
# systemd units (tests/install/run.sh).
test-install: $(OUT)/cardvault
	@tests/lib/with-postgres.sh tests/install/run.sh $(OUT)/cardvault

# Lint gate: every check runs even when an earlier one failed; each prints
# "NAME: N passed, N failed" and any finding fails `make lint` (and `make test`).
#   cppcheck    warnings, portability, performance; false positives only in
#               tests/lint/cppcheck.supp or inline, each with its reason
#   clang-tidy  the checks and their reasons are in .clang-tidy; it compiles
#               each file with this Makefile's CFLAGS (compile_flags.txt), one
#               process per file (clang-tidy 14's analyzer carries state from
#               one file to the next and reports phantom va_list findings)
#   banned      tests/lint/banned-functions.sh (the list and why, self-tested)
#   format      format-check over every C file of the repository
#   arch        tests/lint/architecture.sh: no include cycle, third-party
#               headers only where docs/architecture.md allows them
#   sql         tests/lint/sql-merchant-predicate.sh
#   docs        tests/lint/readme-commands.sh: README lists every command
C_FILES := $(sort $(shell find service include tests bench -name node_modules -prune -o \
                  -type f -name '*.[ch]' -print 2>/dev/null))
LINT_DEFS := $(filter -D% -I%,$(CFLAGS))
CPPCHECK_FLAGS := --enable=warning,portability,performance --error-exitcode=1 --inline-suppr \
        --std=c11 --library=posix --quiet --suppressions-list=tests/lint/cppcheck.supp \
        $(filter-out -I/usr/%,$(LINT_DEFS)) -Iservice \
        --template='{file}:{line}: {severity}: [{id}] {message}'

lint:
	@st=0; \
	$(MAKE) --no-print-directory lint-cppcheck || st=1; \
	$(MAKE) --no-print-directory lint-tidy || st=1; \
	$(MAKE) --no-print-directory lint-banned || st=1; \
	$(MAKE) --no-print-directory format-check || st=1; \
	$(MAKE) --no-print-directory lint-arch || st=1; \
	$(MAKE) --no-print-directory lint-sql || st=1; \
	$(MAKE) --no-print-directory lint-docs || st=1; \
	if [ $$st -eq 0 ]; then echo "lint: clean"; else echo "lint: FAILED (findings above)"; fi; \
	exit $$st

lint-cppcheck:
	@echo "== lint: cppcheck"
	@tests/lint/run-tool.sh cppcheck cppcheck $(CPPCHECK_FLAGS) service include

# The compiler flags clang-tidy needs, written from CFLAGS by make (never a
# hand copy); clang-tidy and editors find compile_flags.txt at the top level.
compile_flags.txt: Makefile FORCE
	@printf '%s\n' $(CFLAGS) > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

lint-tidy: compile_flags.txt
	@echo "== lint: clang-tidy"
	@tests/lint/run-tool.sh clang-tidy sh -c 'printf "%s\n" "$$@" | xargs -n1 clang-tidy --quiet' sh \
		$(sort $(wildcard service/*.c service/*/*.c))

lint-banned:
	@echo "== lint: banned functions"
	@tests/lint/banned-functions.sh

# The README's command list names every command the binary's --help lists.
lint-docs: $(OUT)/cardvault
	@echo "== lint: README command list"
	@tests/lint/readme-commands.sh $(OUT)/cardvault

lint-arch:
	@echo "== lint: architecture"
	@tests/lint/architecture.sh

format:
	clang-format -i $(C_FILES)

format-check:
	@echo "== lint: format-check"
	@tests/lint/run-tool.sh format-check clang-format --dry-run --Werror $(C_FILES)

FORCE:

clean:
	rm -rf build cardvault

# Fuzzing and memcheck (tests/fuzz/fuzz.mk); benchmarks (bench/bench.mk).
# Optional includes: the Docker build stage copies only Makefile, include/,
# service/ and migrations/, and must still be able to build the binary
# (tests/lint/docker-build.sh checks that).
-include tests/fuzz/fuzz.mk
-include bench/bench.mk

# The Dockerfile's build stage, reproduced without a Docker engine.
docker-build-check:
	@echo "== docker build stage (without Docker)"
	@tests/lint/docker-build.sh

# Two vaults behind HAProxy, PostgreSQL 15 primary + synchronous standby with
# pg_auto_failover, on loopback (tests/cluster/, docs/scaling.md). Ctrl-C stops it.
cluster: $(OUT)/cardvault
	@tests/cluster/cluster.sh $(OUT)/cardvault

# Faults under load against that cluster (part of `make test`; docs/scaling.md).
test-cluster: $(OUT)/cardvault
	@tests/cluster/test-cluster.sh $(OUT)/cardvault
