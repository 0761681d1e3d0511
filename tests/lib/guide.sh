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
    assert_eq "$(printf '%s\n' "${GUIDE_RAN[@]}")" "$(guide_ids "$1")" \
        "$1 steps run, in the guide's order"
}
