# uppercased — build, test, install.
#
#   make            build the programs: uppercased, uppercasectl, uppercase
#   make run        install missing packages, build, run in the foreground
#   make check      install missing packages, build what the tests run, run
#                   every test (check-layers, check-unit, check-integration,
#                   check-asan, fuzz-replay, check-system, check-netns; each
#                   builds what it runs)
#   make bench      build the benchmark's programs (bench-build), run bench/run
#   make bench-models  the three worker models compared, for students (< 2 min)
#   make bench-netns  req/s direct, through HAProxy, nginx and DNAT (root)
#   make fuzz       build the libFuzzer targets (fuzz-build), fuzz each
#   make install    install the programs under $(DESTDIR)$(PREFIX)
#
# Honours CC, CFLAGS, CPPFLAGS, LDFLAGS, DESTDIR, PREFIX (and CC_FOR_BUILD
# with its *_FOR_BUILD flags, BASHCOMPDIR).  CI=true adds -Werror.

VERSION    := $(shell cat VERSION)
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
LIBEXECDIR ?= $(PREFIX)/libexec
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
# journalctl reads catalogs from /usr/lib and /usr/local/lib/systemd/catalog.
CATALOGDIR ?= $(PREFIX)/lib/systemd/catalog
# Where bash-completion looks (it searches $XDG_DATA_DIRS, /usr/local/share
# included); empty: the completions are not installed.
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions

BUILD      ?= build
CC         ?= cc
CFLAGS     ?= -O2 -g
# _FORTIFY_SOURCE is a preprocessor flag: defined here unless the caller's
# CPPFLAGS (dpkg-buildflags' define it) or CFLAGS already mention it.  The
# sanitizer builds pass FORTIFY=-U_FORTIFY_SOURCE: the sanitizers do not
# support it (missed bugs or false reports, says ASan's FAQ).
FORTIFY    := $(if $(findstring _FORTIFY_SOURCE,$(CPPFLAGS) $(CFLAGS)),,-D_FORTIFY_SOURCE=2)
WARNINGS   := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wformat=2 \
              -Wmissing-prototypes -Wstrict-prototypes
ifneq ($(CI),)
WARNINGS   += -Werror
endif

# libunistring has no pkg-config file in Debian 12: fall back to -lunistring.
PKG_CFLAGS := $(shell pkg-config --cflags libsystemd libconfig 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs libsystemd libconfig 2>/dev/null) \
              $(shell pkg-config --libs libunistring 2>/dev/null || echo -lunistring)
# libedit: line editing in uppercase's interactive sessions.
EDIT_CFLAGS := $(shell pkg-config --cflags libedit 2>/dev/null)
EDIT_LIBS   := $(shell pkg-config --libs libedit 2>/dev/null || echo -ledit)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

# INCLUDES: each directory's own, set per directory below.
ALL_CPPFLAGS  = -D_GNU_SOURCE -DVERSION='"$(VERSION)"' \
                -DSYSCONFDIR='"$(SYSCONFDIR)"' -DLIBEXECDIR='"$(LIBEXECDIR)"' $(INCLUDES) $(FORTIFY) $(CPPFLAGS)
ALL_CFLAGS   := -std=gnu11 -pthread $(WARNINGS) $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS  := -pthread $(LDFLAGS)

COMMON_SRC := $(wildcard common/*.c)
DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
CTL_LIB_SRC := $(filter-out ctl/main.c,$(wildcard ctl/*.c))
UNIT_SRC   := $(wildcard tests/unit/*.c)
TOOL_SRC   := $(wildcard tests/tools/*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

LIBCOMMON  := $(BUILD)/libcommon.a
LIBDAEMON  := $(BUILD)/libuppercased.a
LIBCTL     := $(BUILD)/libctl.a
DAEMON     := $(BUILD)/uppercased
FORKER     := $(BUILD)/uppercased-forker
CTL        := $(BUILD)/uppercasectl
CLIENT     := $(BUILD)/uppercase
CLIENT_LIB_SRC := $(filter-out client/main.c,$(wildcard client/*.c))
LIBCLIENT  := $(BUILD)/libclient.a
UNIT       := $(BUILD)/unit-tests
TOOLS      := $(patsubst tests/tools/%.c,$(BUILD)/tests/%,$(TOOL_SRC))
SHIMS      := $(patsubst tests/shim/%.c,$(BUILD)/tests/%.so,$(wildcard tests/shim/*.c))

PROGRAMS   := $(DAEMON) $(FORKER) $(CTL) $(if $(wildcard client/main.c),$(CLIENT))
MANPAGES   := $(wildcard man/*.[1-8])

# What check-integration runs besides the programs: tests/tools/
# (test_unicode.py), the LD_PRELOAD shims of tests/shim/
# (test_stop_slow_workers.py), bench/'s load generator and reference echo
# (test_bench.py).
BENCH_BIN  := $(BUILD)/bench/uppercase-bench $(BUILD)/bench/echo-ref
INTEGRATION_BIN := $(PROGRAMS) $(TOOLS) $(SHIMS) $(BENCH_BIN)

.PHONY: all deps run check check-layers check-unit check-asan check-integration check-netns check-system install clean
all: $(PROGRAMS)

# Include paths, per directory: each layer sees its own headers and common/'s
# (daemon/, ctl/ and client/ none of each other's); the tests see everything,
# bench/ and fuzz/ the daemon's.
$(BUILD)/common/%.o: INCLUDES := -Icommon
$(BUILD)/daemon/%.o: INCLUDES := -Icommon -Idaemon
$(BUILD)/ctl/%.o:    INCLUDES := -Icommon -Ictl
$(BUILD)/client/%.o: INCLUDES := -Icommon -Iclient
$(BUILD)/client/edit.o: ALL_CFLAGS += $(EDIT_CFLAGS)
$(BUILD)/tests/%.o:  INCLUDES := -Icommon -Idaemon -Ictl -Iclient
$(BUILD)/bench/%.o:  INCLUDES := -Icommon -Idaemon
$(BUILD)/forker/%.o: INCLUDES := -Icommon -Idaemon
$(BUILD)/tests/unit/%.o: ALL_CFLAGS += $(CHECK_CFLAGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBCOMMON): $(call obj,$(COMMON_SRC))
	$(AR) rcs $@ $^
$(LIBDAEMON): $(call obj,$(DAEMON_SRC))
	$(AR) rcs $@ $^
$(LIBCTL): $(call obj,$(CTL_LIB_SRC))
	$(AR) rcs $@ $^
$(LIBCLIENT): $(call obj,$(CLIENT_LIB_SRC))
	$(AR) rcs $@ $^

$(DAEMON): $(call obj,daemon/main.c) $(LIBDAEMON) $(LIBCOMMON)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)
# The process model's fork helper: libc and what a worker runs, no
# libsystemd (daemon/fork-helper.h says why).  -z now: symbols are bound
# once, in the helper, not again by every forked worker.
$(FORKER): $(call obj,forker/main.c) $(LIBDAEMON) $(LIBCOMMON)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Wl,-z,now -o $@ $^
$(CTL): $(call obj,ctl/main.c) $(LIBCTL) $(LIBCOMMON)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^
$(CLIENT): $(call obj,client/main.c) $(LIBCLIENT) $(LIBCOMMON)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(EDIT_LIBS)
$(UNIT): $(call obj,$(UNIT_SRC)) $(LIBDAEMON) $(LIBCTL) $(if $(CLIENT_LIB_SRC),$(LIBCLIENT)) $(LIBCOMMON)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(PKG_LIBS) $(EDIT_LIBS)
$(TOOLS): $(BUILD)/tests/%: $(BUILD)/tests/tools/%.o $(LIBDAEMON) $(LIBCOMMON)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)
# LD_PRELOAD shims for the integration tests: plain -fPIC, no sanitizer of
# their own (they are loaded into the sanitized daemon too).
$(BUILD)/tests/%.so: tests/shim/%.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g $(WARNINGS) -fPIC -shared -o $@ $< -ldl

# transform table: daemon/upcase.c maps non-ASCII text through a table that
# tools/gen-case-table.c builds from the libunistring on the build machine;
# build/bench/transform measures it.  The generator runs where it is built:
# cross-compiling, CC_FOR_BUILD builds it with CFLAGS_FOR_BUILD,
# CPPFLAGS_FOR_BUILD and LDFLAGS_FOR_BUILD (dpkg-buildflags gives them from
# dpkg 1.22; without them, -O2 -g as autoconf's AX_PROG_CC_FOR_BUILD does:
# the host's CFLAGS may not suit the build compiler).  Natively (no
# CC_FOR_BUILD given) it is built like the programs, with CC and CFLAGS,
# CPPFLAGS, LDFLAGS, so that the distribution's hardening flags reach it
# too (blhc checks every compiler line of the build log).
ifeq ($(origin CC_FOR_BUILD),undefined)
CC_FOR_BUILD        = $(CC)
CFLAGS_FOR_BUILD   ?= $(CFLAGS)
CPPFLAGS_FOR_BUILD ?= $(CPPFLAGS)
LDFLAGS_FOR_BUILD  ?= $(LDFLAGS)
else
CFLAGS_FOR_BUILD   ?= -O2 -g
endif
CASE_TABLE   := $(BUILD)/gen/case-table.h
TRANSFORM    := $(BUILD)/bench/transform
$(BUILD)/tools/gen-case-table: tools/gen-case-table.c
	@mkdir -p $(@D)
	$(CC_FOR_BUILD) $(CPPFLAGS_FOR_BUILD) -std=gnu11 $(WARNINGS) $(CFLAGS_FOR_BUILD) \
	    $(LDFLAGS_FOR_BUILD) -o $@ $< \
	    $(shell pkg-config --libs libunistring 2>/dev/null || echo -lunistring)
$(CASE_TABLE): $(BUILD)/tools/gen-case-table
	@mkdir -p $(@D)
	$< $@
$(BUILD)/daemon/upcase.o: INCLUDES += -I$(BUILD)/gen
$(BUILD)/daemon/upcase.o: $(CASE_TABLE)
$(TRANSFORM): $(BUILD)/bench/transform.o $(LIBDAEMON) $(LIBCOMMON)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)
# end transform table

# Debian packages the build and the tests need; installed when missing.
deps:
	@sh tools/install-deps

# The shipped configuration puts the control socket in /run/uppercased, which
# only root may create; anyone else gets one in their runtime directory.
RUN_CONTROL = $(if $(filter 0,$(shell id -u)),,--control $${XDG_RUNTIME_DIR:-/tmp/uppercased-$$(id -u)}/uppercased/control.sock)

run: deps
	@$(MAKE) --no-print-directory all
	$(DAEMON) -c etc/uppercased.conf $(RUN_CONTROL)

# make check: every test, on a normal and on an ASan+UBSan build.  Each part
# builds what it runs.
check: deps
	@$(MAKE) --no-print-directory check-layers
	@$(MAKE) --no-print-directory check-unit
	@$(MAKE) --no-print-directory check-integration
	@$(MAKE) --no-print-directory check-asan
	@$(MAKE) --no-print-directory fuzz-replay
	@$(MAKE) --no-print-directory check-system
	@$(MAKE) --no-print-directory check-netns

# Several instances behind the real HAProxy and nginx (and an nftables
# stand-in for LVS), in network namespaces, on the configurations of
# docs/examples/ (needs root; skips without, except under CI=true).
check-netns: $(PROGRAMS)
	UPPERCASED_BUILD=$(abspath $(BUILD)) tests/netns/run

# The package on a real systemd in a container (needs root; skips without,
# except under CI=true).  It builds the package itself.
check-system:
	tests/system/run

check-unit: $(UNIT)
	CK_DEFAULT_TIMEOUT=60 $(UNIT)

# The layering of the sources, from their #include lines (docs/design.md).
check-layers:
	tests/layers/check

# Asked for both (make check-unit check-integration), the unit tests run
# first, even under -j: the two at once would disturb each other's timing.
check-integration: $(INTEGRATION_BIN) | $(filter check-unit,$(MAKECMDGOALS))
	UPPERCASED_BUILD=$(abspath $(BUILD)) UPPERCASED_ASAN=$(UPPERCASED_ASAN) tests/run-integration

# The unit and the integration tests again, on an ASan+UBSan build in
# build-asan/.
check-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan FORTIFY=-U_FORTIFY_SOURCE UPPERCASED_ASAN=1 \
	    CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	    check-unit check-integration

install: $(PROGRAMS)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/uppercased
	install -m 0755 $(DAEMON) $(DESTDIR)$(SBINDIR)/uppercased
	install -d $(DESTDIR)$(LIBEXECDIR)/uppercased
	install -m 0755 $(FORKER) $(DESTDIR)$(LIBEXECDIR)/uppercased/uppercased-forker
	install -m 0755 $(CTL) $(DESTDIR)$(BINDIR)/uppercasectl
	$(if $(wildcard client/main.c),install -m 0755 $(CLIENT) $(DESTDIR)$(BINDIR)/uppercase)
	for m in $(MANPAGES); do \
		s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; \
	done
	install -m 0644 etc/uppercased.conf $(DESTDIR)$(SYSCONFDIR)/uppercased/uppercased.conf
	install -d $(DESTDIR)$(UNITDIR)
	install -m 0644 systemd/*.socket systemd/*.service $(DESTDIR)$(UNITDIR)/
	install -d $(DESTDIR)$(CATALOGDIR)
	install -m 0644 catalog/uppercased.catalog $(DESTDIR)$(CATALOGDIR)/
	$(if $(BASHCOMPDIR),install -d $(DESTDIR)$(BASHCOMPDIR))
	$(if $(BASHCOMPDIR),install -m 0644 completions/* $(DESTDIR)$(BASHCOMPDIR)/)

clean:
	rm -rf build build-asan build-fuzz

# bench/: the load generator and the reference echo servers (libc and
# pthread only); "make bench" runs the whole matrix, bench/run (see
# bench/README.md), "make bench-models" its comparison of the three worker
# models (bench/run --models, docs/lab.md section 10).  "make bench-build"
# builds what they run, and the transform micro-benchmark.
$(BENCH_BIN): $(BUILD)/bench/%: $(BUILD)/bench/%.o
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^
# The same echo on sd-event: what the event model's own epoll loop saves.
$(BUILD)/bench/echo-sdevent: $(BUILD)/bench/echo-sdevent.o
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)
.PHONY: bench bench-build bench-models bench-netns
bench-build: $(DAEMON) $(FORKER) $(BENCH_BIN) $(BUILD)/bench/echo-sdevent $(TRANSFORM)
bench: bench-build
	@sh bench/install-deps
	bench/run
bench-models: bench-build
	@sh bench/install-deps
	bench/run --models
# Requests per second direct to one instance, through HAProxy and through
# nginx, side by side (the namespaces of check-netns; root).
bench-netns: $(PROGRAMS) $(BUILD)/bench/uppercase-bench
	UPPERCASED_BUILD=$(abspath $(BUILD)) tests/netns/run --bench

# fuzz: libFuzzer targets (fuzz/fuzz-*.c), built with clang and linked
# against a copy of the libraries instrumented for ASan, UBSan and coverage
# in build-fuzz/.  "make fuzz" runs each for FUZZ_SECONDS on a temporary
# copy of its corpus (FUZZ_MERGE=1 merges what adds coverage back into
# fuzz/corpus/; crashes land in fuzz/crashes/); "make fuzz-replay", part of
# make check, runs each over its committed corpus once.
FUZZ_BUILD   := build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_MERGE   ?=
FUZZ_SAN     := -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/fuzz/%,$(wildcard fuzz/fuzz-*.c))
FUZZ_LIBS    := $(FUZZ_BUILD)/libuppercased.a $(FUZZ_BUILD)/libcommon.a
.PHONY: fuzz fuzz-replay fuzz-build fuzz-clean
# CI= : clang's warnings in daemon code are gcc's business (make CI=1 all);
# the targets themselves still honour CI.
fuzz-build:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) CI= FORTIFY=-U_FORTIFY_SOURCE \
	    CFLAGS="-O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FUZZ_LIBS)
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS)
$(FUZZ_BUILD)/fuzz/%: INCLUDES := -Icommon -Idaemon
$(FUZZ_BUILD)/fuzz/%: FORTIFY := -U_FORTIFY_SOURCE
$(FUZZ_BUILD)/fuzz/%: fuzz/%.c $(FUZZ_LIBS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(ALL_CPPFLAGS) -std=gnu11 -pthread $(WARNINGS) $(PKG_CFLAGS) \
	    -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIBS) $(PKG_LIBS)
fuzz: fuzz-build
	fuzz/run fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_MERGE)
fuzz-replay: fuzz-build
	@fuzz/run replay $(FUZZ_BUILD)
fuzz-clean:
	rm -rf $(FUZZ_BUILD)
# end fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
