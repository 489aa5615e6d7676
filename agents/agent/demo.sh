#!/bin/sh
# Demo agent for `make run`: an agent in network namespace rpt_demo, enrolled with the console.
#
#   agents/agent/demo.sh start --console URL --token TOKEN [--state DIR] [--backend nft|legacy]
#   agents/agent/demo.sh stop  [--state DIR]
#   agents/agent/demo.sh status [--state DIR]
#
# Needs root and iproute2. The namespace is joined to the root namespace by a veth pair:
# root side 198.18.255.1/30 (rpt_demo0), namespace side 198.18.255.2/30; the agent listens on
# 198.18.255.2:8745 and applies its rules inside rpt_demo only (the root namespace's firewall
# is never touched). Give the console's device that address. Enrollment runs from the root
# namespace (it only needs to reach the console), with the facts read inside rpt_demo.
# Without root, use the recording dataplane instead:
#   rampart-agent serve --dataplane recording --listen 127.0.0.1:8745 --state-dir var/agent-demo
set -eu

NS=rpt_demo
VETH=rpt_demo0
HOST_ADDR=198.18.255.1
AGENT_ADDR=198.18.255.2
ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
PY="${PYTHON:-$ROOT/.venv/bin/python}"
AGENT="env PYTHONPATH=$ROOT $PY -m agents.agent.cli"
STATE="$ROOT/var/agent-demo"
BACKEND=nft
CONSOLE=""
TOKEN=""
cmd="${1:-}"
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
    case "$1" in
        --console) CONSOLE="$2"; shift 2 ;;
        --token) TOKEN="$2"; shift 2 ;;
        --state) STATE="$2"; shift 2 ;;
        --backend) BACKEND="$2"; shift 2 ;;
        *) echo "demo.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

die() { echo "demo.sh: $*" >&2; exit 1; }

start() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces); see the header for a rootless agent"
    command -v ip >/dev/null || die "needs iproute2"
    [ -n "$CONSOLE" ] && [ -n "$TOKEN" ] || die "usage: demo.sh start --console URL --token TOKEN"
    mkdir -p "$STATE"
    if ! ip netns list | grep -qw "$NS"; then
        ip netns add "$NS"
        ip link add "$VETH" type veth peer name eth0 netns "$NS"
        ip addr add "$HOST_ADDR/30" dev "$VETH"
        ip link set "$VETH" up
        ip netns exec "$NS" ip link set lo up
        ip netns exec "$NS" ip addr add "$AGENT_ADDR/30" dev eth0
        ip netns exec "$NS" ip link set eth0 up
        ip netns exec "$NS" ip route add default via "$HOST_ADDR"
    fi
    ip netns exec "$NS" $AGENT facts --state-dir "$STATE" --dataplane "$BACKEND" > "$STATE/facts.json"
    if [ ! -s "$STATE/console.pub" ]; then
        $AGENT enroll --console "$CONSOLE" --token "$TOKEN" --state-dir "$STATE" \
            --facts-file "$STATE/facts.json" --listen-port 8745 --dataplane recording
    fi
    stop_agent
    ip netns exec "$NS" $AGENT serve --state-dir "$STATE" --dataplane "$BACKEND" \
        --listen "$AGENT_ADDR:8745" > "$STATE/agent.out" 2> "$STATE/agent.log" &
    echo $! > "$STATE/agent.pid"
    i=0
    until grep -q ready "$STATE/agent.out" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || die "agent did not start; see $STATE/agent.log"
        sleep 0.1
    done
    echo "demo agent ready on https://$AGENT_ADDR:8745 (namespace $NS, pid $(cat "$STATE/agent.pid"))"
}

stop_agent() {
    if [ -s "$STATE/agent.pid" ]; then
        kill "$(cat "$STATE/agent.pid")" 2>/dev/null || true
        rm -f "$STATE/agent.pid"
    fi
}

stop() {
    stop_agent
    ip netns delete "$NS" 2>/dev/null || true  # its veth end goes with it
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) ip netns exec "$NS" $AGENT status --state-dir "$STATE" --dataplane "$BACKEND" ;;
    *) echo "usage: demo.sh start|stop|status [--console URL --token T] [--state DIR]" >&2; exit 2 ;;
esac
