#!/usr/bin/env bash
# bench-local.sh: the cost of authorization through the local stack
# (make bench-local). For each configuration it starts `keyward dev` on a
# free loopback port with a fresh data directory, creates a bench key
# through the admin API, loads GET /invoices (the built-in echo) with
# cmd/loadgen, and stops the stack:
#
#   baseline    GET /invoices with auth "none": the same request, straight
#               to the echo, no authorizer
#   cache off   the authorizer on every request (-cache-ttl 0)
#   cache on    the authorizer cache at gateway.json's TTL (300 s)
#
# It prints a Markdown table with each configuration's ratio to the
# baseline, and exits non-zero if any request failed or got a non-200.
#
# Environment: BENCH_CONCURRENCY (8), BENCH_DURATION (10s), BENCH_WARMUP
# (2s), BENCH_KEEP=1 to keep the temporary directory (logs), GO (go).
#
# The stack writes one JSON log line per request to stdout (two with the
# authorizer called: its decision and the gateway's access line), here to a
# file in the temporary directory. That is part of what is measured, as it
# is in production.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}

# The flags below say everything; no setting may leak in from the shell.
unset UPSTREAM KEYWARD_ADDR KEYWARD_DATA_DIR KEYWARD_ROUTES_FILE KEYWARD_GATEWAY_FILE \
	KEYWARD_CACHE_TTL KEYWARD_TOKEN_PREFIX KEYWARD_OPERATOR_TOKEN

work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-bench.XXXXXX")
stack_pid=""
ok=0
cleanup() {
	if [[ -n $stack_pid ]]; then
		kill -TERM "$stack_pid" 2>/dev/null || true
		wait "$stack_pid" 2>/dev/null || true
	fi
	if [[ $ok == 1 && ${BENCH_KEEP:-} != 1 ]]; then
		rm -rf "$work"
	else
		echo "bench-local: logs and data kept in $work" >&2
	fi
}
trap cleanup EXIT

die() {
	echo "bench-local: $*" >&2
	exit 1
}

echo "building cmd/keyward and cmd/loadgen" >&2
"$GO" build -o "$work/keyward" ./cmd/keyward
"$GO" build -o "$work/loadgen" ./cmd/loadgen

# The shipped gateway settings plus a tier that never throttles the
# benchmark, appended last: the first tier stays the default one. 1,000,000
# requests per minute is the most a key may have (pkg/keys), and the burst
# alone covers any run this script makes.
bench_rpm=1000000
awk -v tier="{\"name\": \"bench\", \"requests_per_minute\": $bench_rpm, \"burst\": $bench_rpm}" '
	/"rate_limit_tiers"/ { in_tiers = 1 }
	in_tiers && /^[[:space:]]*\]/ { print "    ," tier; in_tiers = 0; added = 1 }
	{ print }
	END { if (!added) exit 1 }
' config/gateway.json >"$work/gateway.json" || die "could not add the bench tier to config/gateway.json"

# The shipped routes with GET /invoices public: the same request goes
# straight to the echo. A route with auth "none" takes no scope.
authorized='{"method": "GET", "path": "/invoices", "scope": "invoices:read"}'
public='{"method": "GET", "path": "/invoices", "auth": "none"}'
grep -qF "$authorized" config/routes.json || die "config/routes.json has no line $authorized"
sed "s|$authorized|$public|" config/routes.json >"$work/routes-public.json"
[[ $(diff config/routes.json "$work/routes-public.json" | grep -c '^[<>]') == 2 ]] ||
	die "the baseline routes file differs from config/routes.json by more than GET /invoices"

# json_field FILE NAME: a number (or an object with no nested braces) of a
# one-line JSON object.
json_field() {
	sed -n "s/.*\"$2\":\(\{[^}]*\}\|[-0-9.eE+]*\).*/\1/p" "$1"
}

# bench NAME [keyward dev flags...]: one configuration, its loadgen JSON
# in $work/NAME/loadgen.json.
bench() {
	local name=$1
	shift
	local dir="$work/$name"
	mkdir -p "$dir"
	"$work/keyward" dev -addr 127.0.0.1:0 -data "$dir/data" -gateway "$work/gateway.json" "$@" \
		>"$dir/stack.log" 2>"$dir/stack.err" &
	stack_pid=$!

	local i
	for ((i = 0; i < 100; i++)); do
		grep -q '"msg":"listening"' "$dir/stack.log" && break
		kill -0 "$stack_pid" 2>/dev/null || die "$name: keyward dev exited: $(cat "$dir/stack.err")"
		sleep 0.1
	done
	grep -q '"msg":"listening"' "$dir/stack.log" || die "$name: keyward dev did not start within 10 s"
	local base admin_key
	base=$(grep -o -m1 'http://127\.0\.0\.1:[0-9]*' "$dir/stack.err") || die "$name: no address in the banner"
	admin_key=$(sed -n 's/^ *export KEYWARD_ADMIN_KEY=\([^ ]*\).*/\1/p' "$dir/stack.err")
	[[ -n $admin_key ]] || die "$name: no admin key in the banner"

	local created secret
	created=$(curl -sS -X POST "$base/v1/keys" -H "Authorization: Bearer $admin_key" \
		-H 'Content-Type: application/json' \
		-d "{\"name\":\"bench\",\"environment\":\"test\",\"scopes\":[\"invoices:read\"],\"rate_limit\":{\"requests_per_minute\":$bench_rpm}}")
	secret=$(sed -n 's/.*"secret":"\([^"]*\)".*/\1/p' <<<"$created")
	[[ -n $secret ]] || die "$name: creating the bench key failed: $created"

	# One request first: a 200 from the echo, which names the tenant only
	# when the authorizer vouched for the caller.
	local probe tenant
	probe=$(curl -sS -w '\n%{http_code}' "$base/invoices" -H "Authorization: Bearer $secret")
	[[ ${probe##*$'\n'} == 200 ]] || die "$name: GET /invoices answered: $probe"
	tenant=$(sed -n 's/.*"tenant_id":"\([^"]*\)".*/\1/p' <<<"$probe")
	case $name in
	baseline) [[ -z $tenant ]] || die "$name: the echo saw tenant $tenant: the route is not public" ;;
	*) [[ $tenant == demo ]] || die "$name: the echo saw no tenant: the route is not authorized" ;;
	esac

	echo "$name: loading $base/invoices, c=$CONCURRENCY, $WARMUP warm-up + $DURATION" >&2
	"$work/loadgen" -url "$base/invoices" -header "Authorization: Bearer $secret" \
		-c "$CONCURRENCY" -d "$DURATION" -warmup "$WARMUP" >"$dir/loadgen.json" ||
		die "$name: loadgen failed"

	kill -TERM "$stack_pid"
	wait "$stack_pid" || die "$name: keyward dev exited with status $?: $(tail -n 5 "$dir/stack.err")"
	stack_pid=""
	echo "$name: $(cat "$dir/loadgen.json")" >&2
	echo "$name: the stack wrote $(wc -l <"$dir/stack.log") log lines ($(du -h "$dir/stack.log" | cut -f1)), $(grep -c '"msg":"authorization decision"' "$dir/stack.log" || true) authorizer decisions" >&2
}

bench baseline -routes "$work/routes-public.json"
bench cache-off -cache-ttl 0
bench cache-on

# The table. Ratios are to the baseline: latency ratios above 1 and a
# throughput ratio below 1 are the cost of authorization.
failed=0
echo
echo "| configuration | requests | rps | p50 ms | p99 ms | p50 ratio | p99 ratio | rps ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
read -r base_rps base_p50 base_p99 < <(
	f="$work/baseline/loadgen.json"
	echo "$(json_field "$f" rps) $(json_field "$f" p50_ms) $(json_field "$f" p99_ms)"
)
for name in baseline cache-off cache-on; do
	f="$work/$name/loadgen.json"
	requests=$(json_field "$f" requests)
	errors=$(json_field "$f" errors)
	status=$(json_field "$f" status)
	case $name in
	baseline) label="authorization off (baseline)" ;;
	cache-off) label="authorized, cache off" ;;
	cache-on) label="authorized, cache on (300 s)" ;;
	esac
	awk -v label="$label" -v n="$requests" -v rps="$(json_field "$f" rps)" \
		-v p50="$(json_field "$f" p50_ms)" -v p99="$(json_field "$f" p99_ms)" \
		-v brps="$base_rps" -v bp50="$base_p50" -v bp99="$base_p99" \
		'BEGIN { printf "| %s | %d | %.0f | %.3f | %.3f | %.2f | %.2f | %.2f |\n", label, n, rps, p50, p99, p50/bp50, p99/bp99, rps/brps }'
	if [[ $errors != 0 || $status != "{\"200\":$requests}" ]]; then
		echo "bench-local: $name: $errors requests got no answer, status counts $status" >&2
		failed=1
	fi
done
echo
echo "c=$CONCURRENCY, $WARMUP warm-up + $DURATION each; $(nproc 2>/dev/null || echo '?') CPUs shared by loadgen and the stack; $("$GO" env GOVERSION) $("$GO" env GOOS)/$("$GO" env GOARCH)"
[[ $failed == 0 ]] || die "some requests failed or were not 200"
ok=1
