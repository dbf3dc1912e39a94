# libFuzzer harnesses for the parsers, included by the top-level Makefile.
#
#   make fuzz         builds $(B)/fuzz/<name> for every harness
#   make fuzz-smoke   builds, replays tests/fuzz/regressions/<name>/, then
#                     runs each harness for FUZZ_SECONDS on a temporary
#                     copy of tests/fuzz/corpus/<name>/ (the repository is
#                     never written); fails on any crash, leak or timeout
#                     and prints the reproducer's path
#
# A harness is tests/fuzz/fuzz_<name>.c linked with the src/ modules it
# needs, all compiled here with clang and the fuzzer, address and
# undefined sanitizers: objects of the gcc build are never reused.

FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 15
FUZZ_RSS_MB   ?= 512
FUZZ_TIMEOUT  ?= 5
# libFuzzer -seed for the smoke run; empty: a fresh one each run.
FUZZ_SEED     ?=
FUZZ_JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_CFLAGS   ?=
FUZZ_LDFLAGS  ?=

FUZZ_DIR  := $(B)/fuzz
FUZZ_OBJ  := $(FUZZ_DIR)/obj
FUZZ_HERE := tests/fuzz

FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OPT := -O1 -g -fno-omit-frame-pointer
# BAYEUX_CHECK_FAST: every element the Bayeux decoder's fast path takes
# is scanned by its reference scanner too, and any difference aborts.
FUZZ_ALL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -DBAYEUX_CHECK_FAST \
	-Iinclude $(FUZZ_OPT) \
	$(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP $(PKG_CFLAGS) \
	$(FUZZ_CFLAGS)
# The harnesses meet the project's warning set (and WERROR=1). The src/
# files are held to it by the gcc build; clang's extra opinions about
# them (e.g. a comment-only fall-through) must not stop the fuzzers.
FUZZ_WARN     = $(WARN)
FUZZ_SRC_WARN = $(filter-out -Werror,$(WARN))

# The harnesses run by `make fuzz` and `make fuzz-smoke`.
FUZZ_NAMES := bayeux_decode format_event auth_parse_token config_load \
	checkpoint_file syslog_frame bayeux_stream soql_decode json_tape

# Every module but main.c goes into one archive; a harness links it, so
# the linker takes the modules the code under test needs, and their own
# needs, without a list here to keep up to date.
FUZZ_LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c))
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:src/%.c=$(FUZZ_OBJ)/src/%.o)
FUZZ_LIB      := $(FUZZ_DIR)/libsfrelay-fuzz.a

# The dictionaries of each harness (concatenated into one file).
FUZZ_DICTS_bayeux_decode    := $(FUZZ_HERE)/json.dict $(FUZZ_HERE)/bayeux.dict
FUZZ_DICTS_format_event     := $(FUZZ_HERE)/json.dict $(FUZZ_HERE)/format.dict
FUZZ_DICTS_auth_parse_token := $(FUZZ_HERE)/json.dict $(FUZZ_HERE)/auth.dict
FUZZ_DICTS_config_load      := $(FUZZ_HERE)/config.dict
FUZZ_DICTS_syslog_frame     := $(FUZZ_HERE)/syslog.dict
FUZZ_DICTS_bayeux_stream    := $(FUZZ_HERE)/json.dict $(FUZZ_HERE)/bayeux.dict
FUZZ_DICTS_soql_decode      := $(FUZZ_HERE)/json.dict
FUZZ_DICTS_json_tape        := $(FUZZ_HERE)/json.dict $(FUZZ_HERE)/format.dict
FUZZ_DICTS_checkpoint_file  := $(FUZZ_HERE)/json.dict \
	$(FUZZ_HERE)/checkpoint.dict

FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_DIR)/%)
FUZZ_DICT_FILES := $(FUZZ_NAMES:%=$(FUZZ_DIR)/%.dict)

.PHONY: fuzz fuzz-smoke

fuzz: $(FUZZ_BINS) $(FUZZ_DICT_FILES)

# The build runs in parallel unless the caller's make already does: the
# whole smoke run has to fit in a CI step of a couple of minutes.
fuzz-smoke:
	+@$(MAKE) --no-print-directory \
		$(if $(findstring jobserver,$(MAKEFLAGS)),,-j$(FUZZ_JOBS)) fuzz
	@FUZZ_SECONDS='$(FUZZ_SECONDS)' FUZZ_RSS_MB='$(FUZZ_RSS_MB)' \
	FUZZ_TIMEOUT='$(FUZZ_TIMEOUT)' FUZZ_SEED='$(FUZZ_SEED)' \
	$(FUZZ_HERE)/smoke.sh '$(FUZZ_DIR)' '$(FUZZ_HERE)' $(FUZZ_NAMES)

$(FUZZ_OBJ)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) $(FUZZ_SRC_WARN) -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_OBJ)/fuzz_%.o: $(FUZZ_HERE)/fuzz_%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) $(FUZZ_WARN) -c -o $@ $<

define FUZZ_HARNESS_RULES
$(FUZZ_DIR)/$(1): $(FUZZ_OBJ)/fuzz_$(1).o $(FUZZ_LIB)
	$$(FUZZ_CC) $$(FUZZ_OPT) $$(FUZZ_SAN) -fsanitize=fuzzer -o $$@ $$^ \
		$$(PKG_LIBS) $$(FUZZ_LDFLAGS)

$(FUZZ_DIR)/$(1).dict: $(FUZZ_DICTS_$(1))
	@mkdir -p $$(dir $$@)
	cat $$^ > $$@
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call FUZZ_HARNESS_RULES,$(n))))
