# dexcache: two commands do everything on a fresh Debian 12 machine.
#   make run   install what is missing, build, run the proxy on conf/dexcache.yaml
#   make test  install what is missing, build with ASan/UBSan, run unit + integration tests (+ a short fuzz)
SHELL := /bin/bash
JOBS ?= $(shell nproc)
CONF ?= conf/dexcache.yaml
PYTHON ?= /usr/bin/python3

# Debian packages, in three sets; each target installs only the sets it needs (`deps-*` below).
# running: a compiler, cmake, pkg-config and the -dev libraries dexcache links
DEB_RUN_PKGS := build-essential cmake pkg-config libh2o-dev libuv1-dev libcurl4-openssl-dev libhiredis-dev \
	libyaml-dev libmbedtls-dev libsodium-dev zlib1g-dev libbrotli-dev libcjson-dev libsystemd-dev libssl-dev
# `make bench`: the other proxies, the load generators and the plot (bench/run is Python)
DEB_BENCH_PKGS := python3 nginx-light varnish wrk nghttp2-client curl python3-matplotlib
# `make deb` (dpkg-buildpackage with debhelper; lintian and adduser for the package test)
DEB_DEB_PKGS := dpkg-dev debhelper fakeroot lintian adduser
# `make test` adds the test tools: clang and libFuzzer, cmocka, redis, pytest and the Python clients,
# openssl (TLS certificates), strace (test_upstream_syscalls), chromium (test_browser), man (man page
# rendering), prometheus (promtool). It runs
# `bench/run --smoke` and tests/integration/test_package.py, so it takes the bench and deb sets too.
DEB_TEST_PKGS := clang clang-format libclang-rt-14-dev libcmocka-dev redis-server python3 python3-pytest \
	python3-requests python3-brotli python3-h2 python3-jwt python3-cryptography curl nghttp2-client openssl strace \
	chromium man-db prometheus $(DEB_BENCH_PKGS) $(DEB_DEB_PKGS)

.PHONY: install all deps deps-test deps-bench deps-deb deb build build-asan build-fuzz build-release-tests run test unit integration fuzz bench-smoke clean format format-check soak

all: build

# Installs only the packages of $(1) that are missing; runs `apt-get update` once first, and $(2)
# (if given) after installing something.
define apt_install
	@missing=""; for p in $(sort $(1)); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing || exit 1; \
	  $(2) \
	fi
endef

# Debian starts the nginx and Varnish services it installs: the bench runs its own, on its own ports.
BENCH_SVC_OFF := for s in nginx varnish varnishncsa; do $$SUDO systemctl disable --now $$s >/dev/null 2>&1; done; true;
# `deps` is what running needs; the others add their own set to it.
deps:
	$(call apt_install,$(DEB_RUN_PKGS))
deps-test: deps
	$(call apt_install,$(DEB_TEST_PKGS),$(BENCH_SVC_OFF))
deps-bench: deps
	$(call apt_install,$(DEB_BENCH_PKGS),$(BENCH_SVC_OFF))
deps-deb: deps
	$(call apt_install,$(DEB_DEB_PKGS))

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDC_TESTS=OFF >/dev/null
	cmake --build build -j $(JOBS)

build-asan: deps-test
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDC_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)

build-fuzz: deps-test
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DDC_FUZZ=ON -DDC_TESTS=OFF >/dev/null
	cmake --build build-fuzz -j $(JOBS)

# A plain Release build with the unit tests on (-O3 finds warnings -O0 does not): compiled, not run.
build-release-tests: deps-test
	cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build-rel -j $(JOBS)

# Under PREFIX (and DESTDIR when set): the daemon, man pages dexcache(8) and dexcache.yaml(5), the
# plugin ABI header and its pkg-config file, the systemd unit; whatever the prefix (under DESTDIR):
# the default config /etc/dexcache/dexcache.yaml (what -c defaults to and the unit names), the
# logrotate file /etc/logrotate.d/dexcache, the log folder /var/log/dexcache, and the plugins
# auth.so and json_view.so in PREFIX/lib[/<multiarch>]/dexcache/plugins.
PREFIX ?= /usr/local
install: build
	cmake -S . -B build -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	DESTDIR=$(DESTDIR) cmake --install build

run: build
	./build/dexcache -c $(CONF)

unit: build-asan
	cd build-asan && ctest --output-on-failure -j $(JOBS)

# Integration tests drive the sanitizer build of the real binary (DEXCACHE_BIN).
integration: build-asan
	DEXCACHE_BIN=$(CURDIR)/build-asan/dexcache $(PYTHON) -m pytest -q -x -p no:cacheprovider tests/integration tests/adversarial tests/fakeorigin

# The adversarial suite at a larger scale, for minutes, printing its figures (CI runs the short mode).
soak: build-asan
	DEXCACHE_SOAK=1 DEXCACHE_BIN=$(CURDIR)/build-asan/dexcache $(PYTHON) -m pytest -q -s -p no:cacheprovider tests/adversarial

FUZZ_SECONDS ?= 15
fuzz: build-fuzz
	@for f in build-fuzz/fuzz_*; do \
	  [ -x "$$f" ] || continue; \
	  name=$$(basename $$f); corpus=tests/fuzz/corpus/$${name#fuzz_}; \
	  mkdir -p build-fuzz/corpus-$$name; \
	  echo "fuzzing $$name for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 build-fuzz/corpus-$$name $$( [ -d $$corpus ] && echo $$corpus ) 2>build-fuzz/$$name.log \
	    || { tail -40 build-fuzz/$$name.log; exit 1; }; \
	  tail -1 build-fuzz/$$name.log; \
	done

# The bench harness must not rot: a few seconds per scenario, checks the table is complete.
bench-smoke: build deps-bench
	$(PYTHON) bench/run --smoke

test: format-check build-release-tests unit integration fuzz bench-smoke
	@echo "make test: all suites passed"

# Every C file we own (third_party/ is vendored as it was) follows the committed .clang-format.
FORMAT_FILES = $$(git ls-files '*.c' '*.h' ':!third_party')
format:
	clang-format -i $(FORMAT_FILES)

format-check: deps-test
	@clang-format --dry-run --Werror $(FORMAT_FILES) || { echo "make format-check: run make format"; exit 1; }

# A Debian package, dexcache_<version>_<arch>.deb, in DEB_OUT (see debian/mkdeb): the daemon in
# /usr/sbin, the unit (enabled), /etc/dexcache/dexcache.yaml as a conffile, logrotate, the man pages;
# dexcache-dev_<version>_all.deb holds the plugin header and its pkg-config file.
DEB_OUT ?= build-deb
deb: deps-deb
	debian/mkdeb $(DEB_OUT)

clean:
	rm -rf build build-asan build-fuzz build-rel build-deb

# Side-by-side benchmarks against nginx proxy_cache, Varnish and a bare libh2o responder
# (bench/README.md): about 5 minutes; BENCH_ARGS=--quick (< 1 minute) or --smoke (seconds, checks the table).
BENCH_ARGS ?=
.PHONY: bench
bench: build deps-bench
	$(PYTHON) bench/run $(BENCH_ARGS)
