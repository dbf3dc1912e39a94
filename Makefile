# sfrelay build. `make` builds build/sfrelay and build/sfmock; `make test`
# installs missing Debian packages (scripts/install-deps.sh), builds and runs
# every test; `make demo` runs the relay against the bundled mock org.

CC      ?= cc
PKG_CONFIG ?= pkg-config
PREFIX  ?= /usr/local
DESTDIR ?=
B       ?= build
# Test binaries run at once by tests/run.sh (make test: one at a time).
TEST_JOBS ?= 1

PKGS      := libcurl json-c libevent libcrypto libevent_openssl libssl libpq
TEST_PKGS := cmocka

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wwrite-strings -Wcast-qual \
	-Wformat=2 -Wundef -Wvla -Wimplicit-fallthrough -Wconversion \
	-Wno-sign-conversion
ifeq ($(WERROR),1)
WARN += -Werror
endif

OPT := -O2 -g
# The sanitizer build also checks the Bayeux decoder's fast path against
# its reference scanner on every element (bayeux_stream.c).
ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined -DBAYEUX_CHECK_FAST
endif

PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS   = $(shell $(PKG_CONFIG) --libs $(TEST_PKGS) 2>/dev/null)

ALL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude $(WARN) $(OPT) \
	-MMD -MP $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(OPT) $(LDFLAGS)

LIB_SRCS  := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(B)/%.o)
MAIN_OBJ  := $(B)/src/main.o
MOCK_SRCS := $(wildcard mock_server/*.c)
MOCK_OBJS := $(MOCK_SRCS:%.c=$(B)/%.o)
# sfmock may reuse pure modules only, never the relay's state machines.
MOCK_LIBS := $(B)/src/log.o $(B)/src/format.o $(B)/src/text.o
TEST_SRCS := $(wildcard tests/test_*.c) $(wildcard tests/e2e_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(B)/tests/%)
# Linked into every test: the e2e helpers and the PostgreSQL test bed.
HARNESS   := $(B)/tests/harness.o $(B)/tests/pgtest.o

# Keep objects that make would otherwise treat as intermediate.
.SECONDARY:

.PHONY: all deps test check unit e2e demo sanitize valgrind install clean docs

all: $(B)/sfrelay $(B)/sfmock

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -c -o $@ $<

$(B)/sfrelay: $(MAIN_OBJ) $(LIB_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/sfmock: $(MOCK_OBJS) $(MOCK_LIBS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/tests/%: $(B)/tests/%.o $(HARNESS) $(LIB_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

deps:
	@scripts/install-deps.sh --check >/dev/null 2>&1 || scripts/install-deps.sh

# The README's test command: dependencies, build, every suite, one closing line.
test: deps
	@$(MAKE) --no-print-directory all-tests
	@B=$(B) TEST_JOBS=$(TEST_JOBS) tests/run.sh $(TEST_BINS)

check: test

all-tests: all $(TEST_BINS)

demo: deps
	@$(MAKE) -s --no-print-directory all
	@B=$(B) scripts/demo.sh

# Suites four at a time (each has its own temp dirs and ports): even
# under the sanitizers most of a suite's time is spent waiting on
# timeouts and restarts, not on the two cores.
sanitize:
	@$(MAKE) --no-print-directory B=build/san SAN=1 TEST_JOBS=4 test

# Unit tests under valgrind, then the end-to-end suite with the relay
# itself under valgrind (a memory error or leak fails its exit checks).
# Two suites at a time: valgrind is single-threaded, CI has two cores,
# and a third suite starves the timing checks of the others.
valgrind: deps
	@$(MAKE) --no-print-directory all-tests
	@B=$(B) VALGRIND=1 TEST_JOBS=2 tests/run.sh $(filter $(B)/tests/test_%,$(TEST_BINS))
	@B=$(B) VALGRIND_RELAY=1 TEST_JOBS=2 tests/run.sh $(filter $(B)/tests/e2e_%,$(TEST_BINS))

docs: $(B)/sfrelay
	$(B)/sfrelay --help-markdown > docs/configuration.md

install: $(B)/sfrelay
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(B)/sfrelay $(DESTDIR)$(PREFIX)/bin/sfrelay

clean:
	rm -rf build

# Fuzz harnesses (clang libFuzzer): make fuzz, make fuzz-smoke.
-include tests/fuzz/fuzz.mk
# Benchmarks against peer clients: make bench, make bench-quick.
-include bench/bench.mk

-include $(shell find $(B) -name '*.d' -type f 2>/dev/null)
