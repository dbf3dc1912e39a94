# Benchmarks (included by the Makefile): `make bench` measures sfrelay
# against a floor client and JavaScript peers on the bundled mock org and
# writes bench/results/latest.md; `make bench-quick` is a one-run smoke
# check of the same, written to build/bench/quick.md. Not part of
# `make test`. Method and results: docs/benchmarks.md. For profiling one
# relay run (perf, callgrind, massif) see bench/profile.sh.

BENCH_B      := build/bench
BENCH_RUNS   ?= 5
BENCH_EVENTS ?= 200000
BENCH_LAT_SECONDS ?= 5
BENCH_LAT_RATES   ?= 1000 10000
BENCH_OUT    ?= bench/results/latest.md
BENCH_TOOLS  := $(BENCH_B)/bench/benchrun $(BENCH_B)/bench/floor \
	$(BENCH_B)/bench/publish $(BENCH_B)/bench/tlsfloor

.PHONY: bench bench-quick bench-build

# The helpers are small single-file programs; they need libcurl only.
$(BENCH_B)/bench/%: bench/%.c bench/stats.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) -O2 -g \
		$(shell $(PKG_CONFIG) --cflags libcurl) -o $@ $< \
		$(shell $(PKG_CONFIG) --libs libcurl)

# OpenSSL alone, for the least memory a TLS client can take.
$(BENCH_B)/bench/tlsfloor: bench/tlsfloor.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) -O2 -g \
		$(shell $(PKG_CONFIG) --cflags openssl) -o $@ $< \
		$(shell $(PKG_CONFIG) --libs openssl)

# An optimized build of the relay and the mock of its own, so the numbers
# never come from a sanitizer or debug build.
bench-build: deps
	@$(MAKE) --no-print-directory B=$(BENCH_B) CFLAGS=-DNDEBUG all
	@$(MAKE) --no-print-directory $(BENCH_TOOLS)

bench: bench-build
	@BENCH_B=$(BENCH_B) BENCH_RUNS=$(BENCH_RUNS) \
		BENCH_EVENTS=$(BENCH_EVENTS) \
		BENCH_LAT_SECONDS=$(BENCH_LAT_SECONDS) \
		BENCH_LAT_RATES="$(BENCH_LAT_RATES)" \
		BENCH_OUT=$(BENCH_OUT) bench/run.sh

bench-quick: bench-build
	@BENCH_B=$(BENCH_B) BENCH_RUNS=1 BENCH_EVENTS=20000 \
		BENCH_LAT_SECONDS=1 BENCH_LAT_RATES="1000 10000" \
		BENCH_ALLOC_EVENTS="2000 4000" \
		BENCH_OUT=$(BENCH_B)/quick.md bench/run.sh
