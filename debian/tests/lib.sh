# Sourced by the tests: TAP-like lines on stdout, the first failure ends the
# test with status 1.  Nothing is written to stderr, which autopkgtest
# counts as a failure: a command's own messages go to stdout.

ok() { echo "ok - $1"; }
fail() { echo "not ok - $1"; [ $# -lt 2 ] || printf '%s\n' "$2" | sed 's/^/#   /'; exit 1; }

# expect DESCRIPTION WANTED ACTUAL
expect() {
        if [ "$3" = "$2" ]; then ok "$1"; else fail "$1" "wanted '$2', got '$3'"; fi
}

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
        what=$1
        shift
        if out=$("$@" 2>&1); then ok "$what"; else fail "$what" "$out"; fi
}

# The service running, as after its first client.
start_service() {
        systemctl start uppercased.service 2>&1
        expect "uppercased.service is active" active "$(systemctl is-active uppercased.service)"
}

# retry SECONDS COMMAND...: until COMMAND succeeds (journald may take a
# moment to store an entry).
retry() {
        n=$(($1 * 4))
        shift
        while ! "$@" >/dev/null 2>&1; do
                n=$((n - 1))
                [ "$n" -gt 0 ] || return 1
                sleep 0.25
        done
}
