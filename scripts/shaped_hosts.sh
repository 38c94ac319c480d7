#!/bin/sh
# Shaped "hosts" on one machine for multi-node measurements (issue 18): network namespaces joined by veth pairs
# to a bridge, each host's egress limited with tc's token bucket filter (tbf), and what mpirun needs to start
# ranks inside them (a hostfile and an rsh launch agent). This kernel has tbf but not netem: bandwidth can be
# shaped, latency cannot (the link's own latency is a veth's, microseconds).
#
#   scripts/shaped_hosts.sh up N RATE    # N hosts (2..9); RATE: 10gbit, 1gbit, 500mbit... or none (unshaped)
#   scripts/shaped_hosts.sh run CMD...   # CMD inside host a, with Open MPI pointed at the hosts
#   scripts/shaped_hosts.sh status       # namespaces, addresses and qdiscs
#   scripts/shaped_hosts.sh down         # kills what runs in the namespaces, removes them and the state folder
#
# Layout: hosts ${PREFIX}-a, ${PREFIX}-b, ... (PREFIX defaults to lsh) are 10.79.0.1, .2, ... on eth0, a veth
# whose peer is a port of bridge br0 in namespace ${PREFIX}-s. Host a's hostname is ${PREFIX}-host-a and so on
# (Open MPI's daemons need one hostname per host; `unshare --uts` gives each command its own). Shaping:
#   tc qdisc replace dev eth0 root tbf rate RATE burst BURST latency 50ms     (in every host)
# BURST defaults to the bytes RATE sends in 1 ms, at least 128kb (tbf needs burst >= rate / timer frequency
# to reach its rate); set SHAPED_BURST=256kb to choose. The bridge's ports are not shaped: what arrives at a
# host was sent at most at RATE by another host, so each direction of each host's link is limited to RATE.
#
# `up` writes into the state folder (SHAPED_DIR, default /tmp/${PREFIX}-hosts):
#   hostfile   "10.79.0.1 slots=2", then "10.79.0.X slots=1": with -np 1+N (or `lockstep train --workers N`),
#              rank 0 (the coordinator) and rank 1 (worker 0) on host a, rank k on host k
#   agent.sh   Open MPI's rsh agent: `agent.sh HOST CMD...` runs CMD in HOST's namespace, as ssh would
#   env        the Open MPI variables `run` sets (plm_rsh_agent, oob/btl tcp on 10.79.0.0/24, btl tcp,self)
# `run CMD...` runs CMD as root in host a (hostname ${PREFIX}-host-a) with those variables, plus
# OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1, SHAPED_HOSTFILE=<hostfile> and SHAPED_RATE=<RATE>. Examples:
#   scripts/shaped_hosts.sh up 2 1gbit
#   scripts/shaped_hosts.sh run sh -c 'mpirun --hostfile $SHAPED_HOSTFILE --bind-to none -np 3 \
#       .build/release/lockstep-distributed-check allreduce-bandwidth 16777216 2 3 0'
#   scripts/shaped_hosts.sh run .build/release/lockstep train --config run.yaml --workers 2 --hostfile /tmp/lsh-hosts/hostfile
#   scripts/shaped_hosts.sh down
# mpirun may be given the agent explicitly instead: mpirun --hostfile H --mca plm_rsh_agent AGENT ... (inside host a).
# Every address is in 10.79.0.0/24 inside the namespaces made here: nothing leaves this machine.
# Needs root, iproute2 (ip, tc, bridge support) and util-linux (unshare).
set -eu

PREFIX=${SHAPED_PREFIX:-lsh}
DIR=${SHAPED_DIR:-/tmp/$PREFIX-hosts}
SUBNET=10.79.0
LETTERS="a b c d e f g h i"

die() { echo "shaped_hosts.sh: $*" >&2; exit 1; }

# Bytes per second of a tc rate such as 10gbit, 1gbit, 500mbit, 100mbps (tc's units: bit = bits, bps = bytes).
rate_bytes() {
    echo "$1" | awk '{
        s = tolower($0); n = s + 0; u = s; sub(/^[0-9.]+/, "", u)
        m["bit"] = 1/8; m["kbit"] = 1e3/8; m["mbit"] = 1e6/8; m["gbit"] = 1e9/8; m["tbit"] = 1e12/8
        m["bps"] = 1; m["kbps"] = 1e3; m["mbps"] = 1e6; m["gbps"] = 1e9
        if (!(u in m)) exit 1
        printf "%.0f\n", n * m[u] }'
}

hosts_up() {
    [ $# -eq 2 ] || die "usage: up N RATE   (N hosts, 2..9; RATE like 10gbit, 1gbit or none)"
    count=$1 rate=$2
    case "$count" in [2-9]) ;; *) die "N must be 2..9, not '$count'" ;; esac
    [ "$(id -u)" -eq 0 ] || die "needs root (ip netns, tc)"
    ip netns list | grep -q "^$PREFIX-s\b" && die "$PREFIX-s exists: run '$0 down' first"
    burst=${SHAPED_BURST:-}
    if [ "$rate" != none ]; then
        bytes=$(rate_bytes "$rate") || die "RATE '$rate' is not a tc rate (10gbit, 1gbit, 500mbit...) nor none"
        if [ -z "$burst" ]; then
            burst=$((bytes / 1000))
            [ "$burst" -ge 131072 ] || burst=131072
        fi
    fi
    mkdir -p "$DIR"
    trap 'echo "shaped_hosts.sh: up failed; removing what it made" >&2; hosts_down' EXIT
    ip netns add "$PREFIX-s"
    ip -n "$PREFIX-s" link add br0 type bridge
    ip -n "$PREFIX-s" link set br0 up
    : >"$DIR/hostfile"
    cases=""
    i=1
    for h in $LETTERS; do
        [ "$i" -le "$count" ] || break
        ns=$PREFIX-$h
        ip netns add "$ns"
        ip -n "$ns" link add eth0 type veth peer name port$h netns "$PREFIX-s"
        ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        ip -n "$PREFIX-s" link set "port$h" master br0
        ip -n "$PREFIX-s" link set "port$h" up
        if [ "$rate" != none ]; then
            ip netns exec "$ns" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
        fi
        if [ "$i" -eq 1 ]; then slots=2; else slots=1; fi
        echo "$SUBNET.$i slots=$slots" >>"$DIR/hostfile"
        cases="$cases  $SUBNET.$i) h=$h ;;
"
        i=$((i + 1))
    done
    cat >"$DIR/agent.sh" <<EOF
#!/bin/sh
# Open MPI's rsh agent (written by scripts/shaped_hosts.sh): "agent.sh HOST CMD..." runs CMD in HOST's
# namespace, with HOST's own hostname, as ssh would.
host=\$1; shift
case "\$host" in
$cases  *) echo "agent.sh: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec $PREFIX-\$h unshare --uts sh -c "hostname $PREFIX-host-\$h; \$*"
EOF
    chmod 755 "$DIR/agent.sh"
    trap - EXIT
    cat >"$DIR/env" <<EOF
OMPI_MCA_plm_rsh_agent=$DIR/agent.sh
OMPI_MCA_oob_tcp_if_include=$SUBNET.0/24
OMPI_MCA_btl=tcp,self
OMPI_MCA_btl_tcp_if_include=$SUBNET.0/24
OMPI_ALLOW_RUN_AS_ROOT=1
OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
SHAPED_HOSTFILE=$DIR/hostfile
SHAPED_RATE=$rate
EOF
    echo "shaped_hosts.sh: $count hosts $SUBNET.1-$SUBNET.$count ($PREFIX-a...), egress ${rate}${burst:+ (tbf burst $burst, latency 50ms)}; hostfile $DIR/hostfile, agent $DIR/agent.sh" >&2
}

hosts_run() {
    [ $# -ge 1 ] || die "usage: run CMD..."
    [ -f "$DIR/env" ] || die "no hosts: run '$0 up N RATE' first"
    # env(1) with the state file's assignments, then the command, in host a with its hostname.
    # shellcheck disable=SC2046
    exec ip netns exec "$PREFIX-a" unshare --uts sh -c "hostname $PREFIX-host-a; exec \"\$@\"" sh \
        env $(cat "$DIR/env") "$@"
}

hosts_down() {
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-[a-z]\$" || true); do
        # Whatever still runs in a namespace (mpirun's daemons, ranks) goes first, by pid.
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$DIR"
}

hosts_status() {
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-[a-z]\$" || true); do
        echo "== $ns"
        ip -n "$ns" -br addr show eth0 2>/dev/null || true
        ip netns exec "$ns" tc qdisc show dev eth0 2>/dev/null || true
    done
    [ -f "$DIR/hostfile" ] && { echo "== $DIR/hostfile"; cat "$DIR/hostfile"; }
    true
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    up) hosts_up "$@" ;;
    run) hosts_run "$@" ;;
    down) hosts_down ;;
    status) hosts_status ;;
    *) sed -n '2,30p' "$0" >&2; exit 2 ;;
esac
