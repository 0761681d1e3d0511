# shellcheck shell=bash
#
# guide.sh - run the admin guide's command blocks literally (sourced by the
# guide_* guest tests after guest.sh).
#
# A tested block in Documentation/admin-guide.md is a fenced block whose info
# string is "sh guide-test=TEST/STEP". A test runs each STEP with guide_step,
# then checks with guide_all_run TEST that it ran every block of TEST, in the
# guide's order, so a block added to the guide without being run fails.
#
#   guide_step ID       print the block ID, then eval it in the caller's shell
#   guide_all_run TEST  fail unless the steps run are exactly TEST's, in order
#                       (a block run on two machines in a row counts once)
#
# For the sections on two machines, a "machine" is a network namespace with a
# root shell of its own that lives for the whole test, as a login on that
# machine would: variables and mounts persist from one block to the next.
# `ip netns exec` gives it its own /etc files (each /etc/netns/NAME/X is
# bound over /etc/X); it also gets its own /run/dst (dstcfg apply's record).
#
#   machine_start NAME      the shell of namespace NAME (which must exist),
#                           with bash -euo pipefail: a command that fails
#                           ends it, and the test with it
#   machine_run NAME TEXT   run TEXT in NAME's shell, as typed there; its
#                           output is logged and left in $MACHINE_OUT
#   guide_step_on NAME ID   print the block ID, then run it in NAME's shell
#   on NAME CMD...          run CMD in NAME's mount and network namespaces
#                           (for assertions: sees its mounts and /etc)

GUIDE=$DST_REPO/Documentation/admin-guide.md
[ -f "$GUIDE" ] || fail "no $GUIDE"
GUIDE_RAN=()

# guide_block ID: the body of the one block "```sh guide-test=ID" of the guide.
guide_block() {
    awk -v id="$1" '
        $0 == "```sh guide-test=" id { n++; on = 1; next }
        on && $0 == "```" { on = 0; next }
        on { print }
        END { exit n == 1 ? 0 : 1 }' "$GUIDE"
}

# guide_ids TEST: the IDs of TEST's blocks, in the guide's order.
guide_ids() {
    sed -n "s|^\`\`\`sh guide-test=\\($1/[^ ]*\\)\$|\\1|p" "$GUIDE"
}

guide_step() {
    local text
    text=$(guide_block "$1") || fail "the guide has no single block 'sh guide-test=$1'"
    log "guide step $1:"
    printf '%s\n' "$text" | sed 's/^/#   | /'
    eval "$text"
    GUIDE_RAN+=("$1")
}

guide_all_run() {
    assert_eq "$(printf '%s\n' "${GUIDE_RAN[@]}" | uniq)" "$(guide_ids "$1")" \
        "$1 steps run, in the guide's order"
}

declare -A MACHINE_PID MACHINE_FD MACHINE_SEEN
MACHINE_STEPS=0

machine_start() {
    local name=$1 dir=$DST_TEST_OUT/machine-$1 fd
    mkdir -p "$dir" "/run/dst-$name" /run/dst
    mkfifo "$dir/in"
    : >"$dir/out"
    # The reader opens the FIFO when the writer below does. ($0 expands in
    # the inner bash.)
    # shellcheck disable=SC2016
    ip netns exec "$name" bash -c 'mount --bind "$0" /run/dst && exec bash --norc --noprofile -euo pipefail -s' \
        "/run/dst-$name" <"$dir/in" >"$dir/out" 2>&1 &
    MACHINE_PID[$name]=$!
    exec {fd}>"$dir/in"
    MACHINE_FD[$name]=$fd
    MACHINE_SEEN[$name]=0
    machine_run "$name" 'cd /'
}

machine_run() {
    local name=$1 dir=$DST_TEST_OUT/machine-$1 n marker
    n=$((++MACHINE_STEPS))
    marker="__machine_step_${n}_done"
    printf '%s\n' "$2" >"$dir/step$n.sh"
    # Its standard input is not the FIFO: a command that reads it would
    # take the next steps.
    printf 'source %q </dev/null\necho %s\n' "$dir/step$n.sh" "$marker" >&"${MACHINE_FD[$name]}"
    until grep -qx "$marker" "$dir/out"; do
        if ! kill -0 "${MACHINE_PID[$name]}" 2>/dev/null; then
            tail -n +"$((MACHINE_SEEN[$name] + 1))" "$dir/out" | sed "s/^/#   $name> /"
            fail "on $name: a command failed, which ended its shell; the commands were: $2"
        fi
        sleep 0.1
    done
    MACHINE_OUT=$(tail -n +"$((MACHINE_SEEN[$name] + 1))" "$dir/out" | { grep -vx "$marker" || true; })
    MACHINE_SEEN[$name]=$(wc -l <"$dir/out")
    [ -z "$MACHINE_OUT" ] || printf '%s\n' "$MACHINE_OUT" | sed "s/^/#   $name> /"
}

guide_step_on() {
    local text
    text=$(guide_block "$2") || fail "the guide has no single block 'sh guide-test=$2'"
    log "guide step $2, on $1:"
    printf '%s\n' "$text" | sed 's/^/#   | /'
    machine_run "$1" "$text"
    GUIDE_RAN+=("$2")
}

on() {
    local name=$1
    shift
    nsenter -t "${MACHINE_PID[$name]}" -m -n -- "$@"
}
