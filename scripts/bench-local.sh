#!/usr/bin/env bash
# bench-local.sh: the cost of authorization through the local stack
# (make bench-local). For each configuration it starts `keyward dev` on a
# free loopback port with a fresh data directory, creates a bench key
# through the admin API, loads GET /invoices (the built-in echo) with
# scripts/loadgen, and stops the stack:
#
#   baseline    the authorizer's decision cached (gateway.json's TTL): the
#               whole gateway path, minus the authorizer call
#   cache off   the authorizer on every request (-cache-ttl 0)
#
# (A public GET /invoices, with no authorization at all, was the baseline
# until route tables refused public routes: BenchmarkGateway in
# pkg/localstack/gateway compares with it in process.)
#
# The two run in turn, BENCH_ROUNDS times, interleaved so that a slow
# spell of a shared machine hits both alike, each round starting with the
# next one. The table gives each configuration's medians over the rounds
# and the median of its ratios to the baseline run of the same round; also
# the CPU time per request of the stack and of loadgen, which a busy
# machine disturbs less than the rates. The script exits non-zero if any
# request got no answer or a status other than 200.
#
# Environment: BENCH_CONCURRENCY (8), BENCH_DURATION (10s), BENCH_WARMUP
# (2s), BENCH_ROUNDS (3), BENCH_KEEP=1 to keep every run's logs in the
# temporary directory, GO (go).
#
# The stack writes one JSON log line per request to stdout (the gateway's
# access line; allowed decisions add one line per 100), here to a file in
# the temporary directory, removed after a clean run. Writing it is part of what is measured, as it is in
# production.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench-local: BENCH_ROUNDS=$ROUNDS is not a positive number" >&2; exit 2; }

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

echo "building cmd/keyward and scripts/loadgen" >&2
"$GO" build -o "$work/keyward" ./cmd/keyward
"$GO" build -o "$work/loadgen" ./scripts/loadgen

# The shipped gateway settings plus a tier that never throttles the
# benchmark, appended last: the first tier stays the default one. 1,000,000
# requests per minute is the most a key may have (pkg/lifecycle), and the burst
# alone covers any run this script makes.
bench_rpm=1000000
awk -v tier="{\"name\": \"bench\", \"requests_per_minute\": $bench_rpm, \"burst\": $bench_rpm}" '
	/"rate_limit_tiers"/ { in_tiers = 1 }
	in_tiers && /^[[:space:]]*\]/ { print "    ," tier; in_tiers = 0; added = 1 }
	{ print }
	END { if (!added) exit 1 }
' pkg/config/gateway.json >"$work/gateway.json" || die "could not add the bench tier to pkg/config/gateway.json"

# json_field FILE NAME: a number (or an object with no nested braces) of a
# one-line JSON object.
json_field() {
	sed -En "s/.*\"$2\":(\{[^}]*\}|[-0-9.eE+]*).*/\1/p" "$1"
}

# bench NAME ROUND [keyward dev flags...]: one run of one configuration,
# its loadgen JSON in $work/NAME-ROUND/loadgen.json. It sets failed=1 if a
# request got no answer or a non-200.
failed=0
bench() {
	local name=$1 round=$2
	shift 2
	local dir="$work/$name-$round"
	mkdir -p "$dir"
	"$work/keyward" dev -addr 127.0.0.1:0 -data "$dir/data" -gateway "$work/gateway.json" "$@" \
		>"$dir/stack.log" 2>"$dir/stack.err" &
	stack_pid=$!

	local i
	for ((i = 0; i < 100; i++)); do
		grep -qs '"msg":"listening"' "$dir/stack.log" && break
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
		-d "{\"name\":\"bench\",\"environment\":\"live\",\"scopes\":[\"invoices:read\"],\"rate_limit\":{\"requests_per_minute\":$bench_rpm}}")
	secret=$(sed -n 's/.*"secret":"\([^"]*\)".*/\1/p' <<<"$created")
	[[ -n $secret ]] || die "$name: creating the bench key failed: $created"

	# One request first: a 200 from the echo, which names the tenant only
	# when the authorizer vouched for the caller.
	local probe tenant
	probe=$(curl -sS -w '\n%{http_code}' "$base/invoices" -H "Authorization: Bearer $secret")
	[[ ${probe##*$'\n'} == 200 ]] || die "$name: GET /invoices answered: $probe"
	tenant=$(sed -n 's/.*"tenant_id":"\([^"]*\)".*/\1/p' <<<"$probe")
	[[ $tenant == demo ]] || die "$name: the echo saw no tenant: the route is not authorized"

	# CPU per request, a measure a busy machine disturbs less than the
	# rates: the stack's from /proc (Linux), loadgen's from the shell's
	# children times, over every request of the run, warm-up included.
	local served_before stack_before stack_after
	served_before=$(grep -c '"msg":"gateway request"' "$dir/stack.log" || true)
	stack_before=$(stack_ticks)
	times >"$dir/times.before"
	echo "$name: loading $base/invoices, c=$CONCURRENCY, $WARMUP warm-up + $DURATION" >&2
	"$work/loadgen" -url "$base/invoices" -header "Authorization: Bearer $secret" \
		-c "$CONCURRENCY" -d "$DURATION" -warmup "$WARMUP" >"$dir/loadgen.json" ||
		die "$name: loadgen failed"
	times >"$dir/times.after"
	stack_after=$(stack_ticks)
	local served=$(($(grep -c '"msg":"gateway request"' "$dir/stack.log" || true) - served_before))
	awk -v n="$served" -v hz="$clk_tck" -v s0="$stack_before" -v s1="$stack_after" '
		function sec(t) { split(t, p, /[ms]/); return p[1] * 60 + p[2] }
		FILENAME ~ /before/ && FNR == 2 { l0 = sec($1) + sec($2) }
		FILENAME ~ /after/ && FNR == 2 { l1 = sec($1) + sec($2) }
		END {
			printf "{\"served\":%d,\"stack_cpu_us\":%s,\"loadgen_cpu_us\":%.1f}\n", n,
				(s0 == "" || s1 == "") ? "null" : sprintf("%.1f", (s1 - s0) / hz / n * 1e6), (l1 - l0) / n * 1e6
		}' "$dir/times.before" "$dir/times.after" >"$dir/cpu.json"

	kill -TERM "$stack_pid"
	wait "$stack_pid" || die "$name: keyward dev exited with status $?: $(tail -n 5 "$dir/stack.err")"
	stack_pid=""
	echo "$name: $(cat "$dir/loadgen.json") $(cat "$dir/cpu.json")" >&2
	echo "$name: the stack wrote $(wc -l <"$dir/stack.log") log lines ($(du -h "$dir/stack.log" | cut -f1)), $(grep -c '"msg":"authorization decision' "$dir/stack.log" || true) decision lines" >&2
	local requests errors status
	requests=$(json_field "$dir/loadgen.json" requests)
	errors=$(json_field "$dir/loadgen.json" errors)
	status=$(json_field "$dir/loadgen.json" status)
	if [[ $errors != 0 || $status != "{\"200\":$requests}" ]]; then
		echo "bench-local: $name round $round: $errors requests got no answer; status counts $status" >&2
		failed=1
	elif [[ ${BENCH_KEEP:-} != 1 ]]; then
		rm -rf "$dir/stack.log" "$dir/data"
	fi
}

# stack_ticks: the stack's CPU time (user + system) in clock ticks, empty
# where there is no /proc.
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
stack_ticks() {
	[[ -r /proc/$stack_pid/stat ]] || return 0
	# Fields 14 and 15 of stat, counted after the ")" that ends the name.
	sed 's/.*) //' "/proc/$stack_pid/stat" | awk '{ print $12 + $13 }'
}

# median NAME FIELD [FILE]: the median of FIELD over NAME's rounds, from
# loadgen.json or FILE; empty if FIELD is missing.
median() {
	local r
	for ((r = 1; r <= ROUNDS; r++)); do
		json_field "$work/$1-$r/${3:-loadgen.json}" "$2"
	done | median_of
}

# ratio NAME FIELD [FILE]: the median over the rounds of NAME's FIELD
# divided by the baseline's in the same round: pairing the runs of a round
# cancels most of a shared machine's slow drift.
ratio() {
	local r
	for ((r = 1; r <= ROUNDS; r++)); do
		awk -v a="$(json_field "$work/$1-$r/${3:-loadgen.json}" "$2")" \
			-v b="$(json_field "$work/baseline-$r/${3:-loadgen.json}" "$2")" \
			'BEGIN { if (a != "" && b > 0) print a / b }'
	done | median_of
}

median_of() {
	sort -g | awk '{ v[NR] = $1 } NR { last = NR } END {
		if (last) print (last % 2) ? v[(last + 1) / 2] : (v[last / 2] + v[last / 2 + 1]) / 2 }'
}

# load_average: the 1, 5 and 15 minute load averages: a busy machine
# shows here.
load_average() {
	if [[ -r /proc/loadavg ]]; then
		cut -d' ' -f1-3 /proc/loadavg
	else
		uptime | sed 's/.*load averages*: //'
	fi
}
load_start=$(load_average)

# Each round starts with the next configuration, so that none always runs
# first (on a rested machine) or last (after the most log writing).
configs=(baseline cache-off)
for ((round = 1; round <= ROUNDS; round++)); do
	echo "round $round of $ROUNDS" >&2
	for ((i = 0; i < ${#configs[@]}; i++)); do
		case ${configs[(round - 1 + i) % ${#configs[@]}]} in
		baseline) bench baseline "$round" ;;
		cache-off) bench cache-off "$round" -cache-ttl 0 ;;
		esac
	done
done

# The table. Ratios are to the baseline run of the same round, their
# median over the rounds: latency ratios above 1 and a throughput ratio
# below 1 are the cost of authorization.
echo
echo "| configuration | rps | p50 ms | p99 ms | p50 ratio | p99 ratio | rps ratio | rps ratio per round | stack CPU µs/req | stack CPU ratio | loadgen CPU µs/req |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
for name in baseline cache-off; do
	case $name in
	baseline) label="authorized, decision cached (baseline)" ;;
	cache-off) label="authorized, cache off" ;;
	esac
	rounds=$(for ((r = 1; r <= ROUNDS; r++)); do
		awk -v a="$(json_field "$work/$name-$r/loadgen.json" rps)" -v b="$(json_field "$work/baseline-$r/loadgen.json" rps)" \
			'BEGIN { printf "%.2f ", a / b }'
	done)
	awk -v label="$label" -v rps="$(median "$name" rps)" -v p50="$(median "$name" p50_ms)" \
		-v p99="$(median "$name" p99_ms)" -v rp50="$(ratio "$name" p50_ms)" -v rp99="$(ratio "$name" p99_ms)" \
		-v rrps="$(ratio "$name" rps)" -v rounds="${rounds% }" -v scpu="$(median "$name" stack_cpu_us cpu.json)" \
		-v rscpu="$(ratio "$name" stack_cpu_us cpu.json)" -v lcpu="$(median "$name" loadgen_cpu_us cpu.json)" '
		BEGIN {
			printf "| %s | %.0f | %.3f | %.3f | %.2f | %.2f | %.2f | %s | %s | %s | %.0f |\n", label, rps, p50, p99,
				rp50, rp99, rrps, rounds, scpu == "" ? "n/a" : sprintf("%.0f", scpu),
				rscpu == "" ? "n/a" : sprintf("%.2f", rscpu), lcpu
		}'
done
echo
echo "Medians of $ROUNDS rounds; c=$CONCURRENCY, $WARMUP warm-up + $DURATION per run;" \
	"$(nproc 2>/dev/null || echo '?') CPUs shared by loadgen and the stack;" \
	"load average $load_start before, $(load_average) after; $("$GO" env GOVERSION) $("$GO" env GOOS)/$("$GO" env GOARCH)."
[[ $failed == 0 ]] || die "some requests got no answer or were not 200"
ok=1
