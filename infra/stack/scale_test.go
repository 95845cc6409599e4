package stack_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/infra/stack"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/dynamo"
	"github.com/keyward/keyward/pkg/usage"
)

// The capacity model of docs/scale.md. Its figures come from the code's
// own constants (the cache TTL, the last-use interval, the shard counts,
// the functions' settings) and from the assumptions below, so the document
// cannot drift from the code: TestScale fails when they disagree, and
// `go test ./stack -run TestScale -update` rewrites its tables.

var updateScale = flag.Bool("update", false, "rewrite the generated tables of docs/scale.md")

// scenario is one deployment's size and traffic.
type scenario struct {
	name            string
	keys, tenants   float64
	activeShare     float64 // keys used at least once in a 5-minute window
	peakRPS         float64
	meanRPS         float64
	addressesPerKey float64 // client addresses per active key (the cache's identity is key and address)
	lifetimeDays    float64 // a key's mean life, creation to revocation or expiry
	expiringShare   float64 // keys created with an expiry (in gsi2)
	memberShare     float64 // keys created by a member (in gsi3)
	perKeyLimits    bool    // usage_identity "key"; else "tenant"
}

var scenarios = []scenario{
	{name: "10k keys", keys: 10_000, tenants: 500, activeShare: 0.20, peakRPS: 200, meanRPS: 50,
		addressesPerKey: 2, lifetimeDays: 365, expiringShare: 0.3, memberShare: 0.5, perKeyLimits: true},
	{name: "1M keys", keys: 1_000_000, tenants: 5_000, activeShare: 0.05, peakRPS: 2_000, meanRPS: 500,
		addressesPerKey: 2, lifetimeDays: 365, expiringShare: 0.3, memberShare: 0.5},
	{name: "10M keys", keys: 10_000_000, tenants: 8_000, activeShare: 0.02, peakRPS: 5_000, meanRPS: 1_500,
		addressesPerKey: 2, lifetimeDays: 365, expiringShare: 0.3, memberShare: 0.5},
}

// Assumptions that are not the code's.
const (
	decisionSeconds   = 0.010   // one authorizer invocation: a GetItem and an HMAC, warm
	itemKB            = 1.0     // a key item; every write of one is 1 write unit (2 in a transaction)
	auditKB           = 0.6     // an audit entry
	auditPerKey       = 5.0     // entries in a key's life: created, updated, expiring 7d and 1d, ended
	scanMBPerSecond   = 10.0    // one Scan segment reading 1 MB pages
	counterHold       = 0.010   // seconds a transaction holds an item against another (DynamoDB does not say)
	bulkKeysPerSecond = 1_000.0 // the bulk import: one tenant, one member, every key with an expiry
	usageItemOverhead = 150     // bytes of a usage hour item besides its JSON: keys, tenant, revision, expiry
	usageCallSeconds  = 0.005   // one DynamoDB call of the usage function
	usageCalls        = 4       // per usage write: the hour item's read and put, the rules' reads of the key and its watch
	monthSeconds      = 730 * 3600.0
)

// Limits, from the AWS documentation (default quotas; several can be
// raised).
const (
	partitionReadUnits  = 3_000  // per partition, per second
	partitionWriteUnits = 1_000  // per partition (of the table or an index), per second
	tableUnits          = 40_000 // on-demand table throughput, reads and writes each, per second
	lambdaConcurrency   = 1_000  // per account and region
	accountRPS          = 10_000 // API Gateway, per account and region
	apiKeysPerRegion    = 10_000 // API Gateway API keys, per account and region
	putEventsPerSecond  = 2_400  // EventBridge PutEvents requests, the smallest regional default
)

// Prices (us-east-1, as docs/deploy.md states them).
const (
	pricePerMillionRequests = 3.50 // API Gateway REST
	priceLambdaRequest      = 0.20 // per million
	priceLambdaGBSecond     = 0.0000133334
	priceReadUnit           = 0.125 // per million, on-demand
	priceWriteUnit          = 0.625 // per million, on-demand
	priceStorageGBMonth     = 0.25
	priceLogsGB             = 0.50
	priceEventsMillion      = 1.00
	priceKMSKeyMonth        = 1.00
	accessLogBytes          = 600
	// An allowed decision's share of its batch line (docs/authorizer.md,
	// Observability); refusals, one line of about 500 bytes each, depend
	// on the clients and are left out, as in docs/deploy.md's cost.
	decisionLogBytes = 10
)

// figure is one row of a table: a value per scenario, and the limit it
// stays under (0: none).
type figure struct {
	name   string
	values []float64
	limit  float64
	format func(float64) string
}

func number(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		s := fmt.Sprintf("%.0f", v)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 0.01:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1g", v)
}

func percent(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }
func dollars(v float64) string { return "$" + number(math.Round(v)) }
func chance(v float64) string  { return fmt.Sprintf("%.1g", v) }

// model computes every figure of docs/scale.md.
type model struct {
	gw  config.Gateway
	ttl float64
}

func (m model) per(f func(s scenario) float64) []float64 {
	out := make([]float64, len(scenarios))
	for i, s := range scenarios {
		out[i] = f(s)
	}
	return out
}

// churn is keys created (and as many ended) per second.
func churn(s scenario) float64 { return s.keys / (s.lifetimeDays * 86400) }

// cacheLife is how long a cached decision lives: the TTL, or less when the
// stage's cache is flushed more often. Every revocation flushes it (at most
// once a second per admin instance; say once a second in all), and the
// expiry sweep flushes it in any minute in which a key expired.
func (m model) cacheLife(s scenario) float64 {
	revocations := churn(s) * (1 - s.expiringShare)
	expiries := churn(s) * s.expiringShare
	flushes := math.Min(revocations, 1) + (1-math.Exp(-expiries*jobs.Schedules[jobs.ExpirySweep].Seconds()))/jobs.Schedules[jobs.ExpirySweep].Seconds()
	if flushes == 0 {
		return m.ttl
	}
	return math.Min(m.ttl, math.Max(1/flushes, 1))
}

// misses is authorizer invocations per second at rps: each identity (key
// and address) misses at most once per cache life.
func (m model) misses(s scenario, rps float64) float64 {
	identities := s.keys * s.activeShare * s.addressesPerKey
	return math.Min(rps, identities/m.cacheLife(s))
}

func touches(s scenario) float64 {
	return s.keys * s.activeShare / authorizer.LastUsedInterval.Seconds()
}

// tableWrites is write units per second on the table: last-use writes,
// and the transactions of key churn (2 units per item of 1 KB).
func tableWrites(s scenario) float64 {
	c := churn(s)
	create := 2*itemKB + 2 + 2 + 2*s.memberShare // key, audit entry, tenant counter, member counter
	end := 2*itemKB + 2                          // key, audit entry
	warnings := 2 * s.expiringShare * (2*itemKB + 2)
	return touches(s)*itemKB + c*(create+end+warnings)
}

// indexWrites is write units per second on the indexes: keys only, so
// only a key's creation, the end of a key with an expiry, and audit
// entries about a key write them.
func indexWrites(s scenario) float64 {
	c := churn(s)
	audits := 2 + 2*s.expiringShare // created, ended, two warnings
	return c * (1 + s.expiringShare + s.memberShare + audits + s.expiringShare)
}

// The usage function (package usage) writes each key's minute once per
// process that saw a request of it: a strongly consistent read of the
// key's hour item and a conditional put of the whole item, then the rules
// read the key and its watch (written about once a day, left out). The
// model takes every process of the reserved concurrency busy, a key's
// requests reaching each independently: an upper bound where the function
// is mostly idle. Left out, as rarer: a second write of a minute whose
// log line came after its process wrote it, retries after a concurrent
// write, and the spike rule's read of a busy key's last 7 days of hours
// (once per key, hour and process).
func usageProcesses() float64 { return float64(stack.Specs[stack.FnUsage].Reserved) }

// keyMinuteRequests is an active key's mean requests in a minute at rps.
func keyMinuteRequests(s scenario, rps float64) float64 { return rps * 60 / (s.keys * s.activeShare) }

// usageWrites is the hour items written per second at rps.
func usageWrites(s scenario, rps float64) float64 {
	p := usageProcesses()
	return s.keys * s.activeShare * p * (1 - math.Exp(-keyMinuteRequests(s, rps)/p)) / 60
}

// usageUnits is the mean read and write units of one usage write at rps,
// the rules' two reads included. The hour item grows with the
// minutes written into it, so the mean is over its sizes through the
// hour: the JSON package dynamo stores, of a representative hour.
func usageUnits(s scenario, rps float64) (read, write float64) {
	r := keyMinuteRequests(s, rps)
	minutes := max(1, int(math.Round(60*(1-math.Exp(-r))))) // with a request
	perMinute := r / (1 - math.Exp(-r))                     // requests in such a minute
	for k := 1; k <= minutes; k++ {
		read += math.Max(1, math.Ceil(usageHourBytes(s, k-1, perMinute)/4096)) + 2
		write += math.Ceil(usageHourBytes(s, k, perMinute) / 1024)
	}
	return read / float64(minutes), write / float64(minutes)
}

// usageHourBytes is the size of a key's hour item with requests in
// minutes of its minutes, perMinute in each.
func usageHourBytes(s scenario, minutes int, perMinute float64) float64 {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	n := int64(math.Round(perMinute))
	h := store.UsageHour{KeyID: "01JDQ4WZ3N7XKQ2V5M8R6T9BCE", TenantID: "tenant-000001", Hour: at, First: at, Last: at.Add(59 * time.Minute),
		Counts: store.UsageCounts{OK: n * int64(minutes)}, Minutes: map[int]store.UsageCounts{}}
	for m := range minutes {
		h.Minutes[m] = store.UsageCounts{OK: n}
	}
	for i := range int(s.addressesPerKey) {
		h.Networks = append(h.Networks, fmt.Sprintf("203.0.%d.0/24", 100+i))
	}
	for range min(store.MaxRecent, int(float64(minutes)*perMinute)) {
		h.Recent = append(h.Recent, store.RecentRequest{Time: at.Add(1234567 * time.Microsecond), Method: "GET",
			Route: "/v1/invoices/{id}", Status: 200, SourceIP: "203.0.113.45", LatencyMS: 12.5})
	}
	raw, err := json.Marshal(h)
	if err != nil {
		panic(err)
	}
	return float64(len(raw) + usageItemOverhead)
}

func eventRate(s scenario) float64 { return churn(s) * (2 + 2*s.expiringShare) }

// usageGB is the size of the usage hour items kept (store.UsageRetention):
// one per active key and hour, at the mean rate.
func usageGB(s scenario) float64 {
	r := keyMinuteRequests(s, s.meanRPS)
	minutes := max(1, int(math.Round(60*(1-math.Exp(-r)))))
	hours := s.keys * s.activeShare * store.UsageRetention.Hours()
	return hours * usageHourBytes(s, minutes, r/(1-math.Exp(-r))) / 1e9
}

// tableGB is the table's size: keys and their audit history, and usage.
func tableGB(s scenario) float64 {
	return keysGB(s) + usageGB(s)
}

// keysGB is the size of the keys and their audit history.
func keysGB(s scenario) float64 {
	retained := math.Min(1, lifecycle.DefaultAuditRetention.Hours()/24/s.lifetimeDays)
	return (s.keys*itemKB + s.keys*auditPerKey*retained*auditKB) / 1e6
}

// scanRunGB is what one run of a scanning job reads: a Lambda timeout's
// worth, less the time the jobs keep for their checkpoint.
func scanRunGB() float64 {
	return (stack.Specs[stack.FnJobs].Timeout - 5*time.Second).Seconds() * scanMBPerSecond / 1000
}

// conflictChance is the chance that one try of a bulk-import creation
// meets another transaction on one of its counters.
func conflictChance() float64 {
	tenantRate := bulkKeysPerSecond / dynamo.CounterShards
	memberRate := bulkKeysPerSecond / dynamo.MemberCounterShards
	return 1 - math.Exp(-2*(tenantRate+memberRate)*counterHold)
}

// statusConflictChance is the chance that one try of writing a tenant
// counter's status (offboarding, dynamo.setCounterStatus) meets a
// creation's transaction on that counter during a bulk import.
func statusConflictChance() float64 {
	return 1 - math.Exp(-2*bulkKeysPerSecond/dynamo.CounterShards*counterHold)
}

func (m model) tables() [][]figure {
	fixed := func(v float64) func(scenario) float64 { return func(scenario) float64 { return v } }
	hottestKeyRPS := float64(m.gw.HighestTier().RequestsPerMinute) / 60
	bulkPerShard := bulkKeysPerSecond / dynamo.PartitionShards
	gsi2Background := func(s scenario) float64 { return churn(s) * s.expiringShare / dynamo.PartitionShards }
	scanRuns := func(s scenario) float64 { return math.Ceil(tableGB(s) / scanRunGB()) }
	cost := func(s scenario) float64 {
		misses := m.misses(s, s.meanRPS)
		lambdaPerMillion := priceLambdaRequest + 1e6*float64(stack.Specs[stack.FnAuthorizer].MemoryMB)/1024*decisionSeconds*priceLambdaGBSecond
		scanUnitsPerSecond := 2 * math.Min(tableGB(s), scanRunGB()) * 1e6 / 4 / 86400 // two scanning jobs a day, 4 KB a unit
		return s.meanRPS*monthSeconds/1e6*pricePerMillionRequests +
			usageCost(s) +
			misses*monthSeconds/1e6*lambdaPerMillion +
			(misses+scanUnitsPerSecond)*monthSeconds/1e6*priceReadUnit +
			(tableWrites(s)+indexWrites(s))*monthSeconds/1e6*priceWriteUnit +
			keysGB(s)*1.1*priceStorageGBMonth +
			(s.meanRPS*accessLogBytes+misses*decisionLogBytes)*monthSeconds/1e9*priceLogsGB +
			eventRate(s)*monthSeconds/1e6*priceEventsMillion +
			2*priceKMSKeyMonth
	}
	return [][]figure{{
		{"requests per second at peak (API Gateway)", m.per(func(s scenario) float64 { return s.peakRPS }), stack.StageRateLimit, number},
		{"cached decision's life (s): the TTL, or the time between cache flushes", m.per(m.cacheLife), 0, number},
		{"authorizer invocations per second at peak, at most", m.per(func(s scenario) float64 { return m.misses(s, s.peakRPS) }), 0, number},
		{"authorizer cache hit rate at peak, at least", m.per(func(s scenario) float64 { return 1 - m.misses(s, s.peakRPS)/s.peakRPS }), 0, percent},
		{"authorizer concurrency at peak (Lambda)", m.per(func(s scenario) float64 { return m.misses(s, s.peakRPS) * decisionSeconds }), lambdaConcurrency, number},
		{"API keys for rate limits (one per key, or per tenant)", m.per(func(s scenario) float64 {
			if s.perKeyLimits {
				return s.keys
			}
			return s.tenants
		}), apiKeysPerRegion, number},
	}, {
		{"table reads per second at peak (read units, usage's included)", m.per(func(s scenario) float64 {
			read, _ := usageUnits(s, s.peakRPS)
			return m.misses(s, s.peakRPS) + usageWrites(s, s.peakRPS)*read
		}), tableUnits, number},
		{"table writes per second at peak (write units, usage's included)", m.per(func(s scenario) float64 {
			_, write := usageUnits(s, s.peakRPS)
			return tableWrites(s) + usageWrites(s, s.peakRPS)*write
		}), tableUnits, number},
		{"of which last-use writes, which write no index", m.per(touches), 0, number},
		{"index writes per second (write units, all three)", m.per(indexWrites), tableUnits, number},
		{"reads of the busiest key's item, cache off (read units a second)", m.per(fixed(hottestKeyRPS)), partitionReadUnits, number},
		{"events per second", m.per(eventRate), 0, number},
		{"PutEvents calls per second", m.per(func(s scenario) float64 { return eventRate(s) / 10 }), putEventsPerSecond, number},
		{"table size (GB), usage's included", m.per(tableGB), 0, number},
		{"daily runs for one full scan (unused keys, pepper retirement)", m.per(scanRuns), 0, number},
		{"usage: hour items written per second at peak (a key's minute, by each process that saw it)", m.per(func(s scenario) float64 { return usageWrites(s, s.peakRPS) }), 0, number},
		{"usage: read units per second at peak", m.per(func(s scenario) float64 {
			read, _ := usageUnits(s, s.peakRPS)
			return usageWrites(s, s.peakRPS) * read
		}), 0, number},
		{"usage: write units per second at peak", m.per(func(s scenario) float64 {
			_, write := usageUnits(s, s.peakRPS)
			return usageWrites(s, s.peakRPS) * write
		}), 0, number},
		{"usage: hour items kept (GB)", m.per(usageGB), 0, number},
		{"usage function concurrency at peak (waiting on DynamoDB alone)", m.per(func(s scenario) float64 { return usageBusy(s, s.peakRPS) }), usageProcesses(), number},
		{"usage's share of the monthly cost", m.per(func(s scenario) float64 { return usageCost(s) / cost(s) }), 0, percent},
		{"cost per month at the mean rate (USD)", m.per(cost), 0, dollars},
	}, {
		{"audit partition, busiest shard (write units a second)", m.per(fixed(2 * bulkPerShard)), partitionWriteUnits, number},
		{"gsi1 tenant keys, busiest shard (write units a second)", m.per(fixed(bulkPerShard)), partitionWriteUnits, number},
		{"gsi3 member keys, busiest shard (write units a second)", m.per(fixed(bulkPerShard)), partitionWriteUnits, number},
		{"gsi2 keys due to expire, busiest shard (write units a second)", m.per(func(s scenario) float64 { return bulkPerShard + gsi2Background(s) }), partitionWriteUnits, number},
		{"transactions a second on each tenant counter", m.per(fixed(bulkKeysPerSecond / dynamo.CounterShards)), 0, number},
		{"transactions a second on each member counter", m.per(fixed(bulkKeysPerSecond / dynamo.MemberCounterShards)), 0, number},
		{"chance one try meets another on a counter", m.per(fixed(conflictChance())), 0, chance},
		{"reads of the tenant's item (one per creation, read units a second)", m.per(fixed(bulkKeysPerSecond)), partitionReadUnits, number},
		{"reads of the calling key's item (one per request, read units a second)", m.per(fixed(bulkKeysPerSecond)), partitionReadUnits, number},
		{"chance one try of an offboarding's status write meets a creation", m.per(fixed(statusConflictChance())), 0, chance},
		{"publisher concurrency (batches of 100, 10 PutEvents calls of 20 ms)", m.per(fixed(bulkKeysPerSecond / float64(stack.StreamBatchSize) * 10 * 0.020)), float64(stack.Specs[stack.FnPublisher].Reserved), number},
	}}
}

// usageBusy is the usage function's busy seconds per second at rps, its
// calls usage.Flushers at a time: waiting on DynamoDB alone, so a floor
// (the function's CPU was not measured).
func usageBusy(s scenario, rps float64) float64 {
	return usageWrites(s, rps) * usageCalls * usageCallSeconds / usage.Flushers
}

// usageCost is the usage function's monthly cost at the mean rate: its
// reads and writes, the items' storage, and its Lambda time (the log deliveries' invocations
// are few and left out).
func usageCost(s scenario) float64 {
	read, write := usageUnits(s, s.meanRPS)
	writes := usageWrites(s, s.meanRPS)
	return writes*monthSeconds/1e6*(read*priceReadUnit+write*priceWriteUnit) +
		usageGB(s)*1.1*priceStorageGBMonth +
		usageBusy(s, s.meanRPS)*monthSeconds*float64(stack.Specs[stack.FnUsage].MemoryMB)/1024*priceLambdaGBSecond
}

// render is the generated part of docs/scale.md.
func (m model) render() string {
	var b strings.Builder
	titles := []string{"Requests and the authorizer", "DynamoDB, events, jobs and cost", "A bulk import of 1,000 keys a second into one tenant, by one member"}
	for i, rows := range m.tables() {
		fmt.Fprintf(&b, "### %s\n\n| figure |", titles[i])
		for _, s := range scenarios {
			fmt.Fprintf(&b, " %s |", s.name)
		}
		b.WriteString(" limit |\n| --- |")
		for range scenarios {
			b.WriteString(" ---: |")
		}
		b.WriteString(" ---: |\n")
		for _, f := range rows {
			fmt.Fprintf(&b, "| %s |", f.name)
			for _, v := range f.values {
				fmt.Fprintf(&b, " %s |", f.format(v))
			}
			if f.limit > 0 {
				fmt.Fprintf(&b, " %s |\n", number(f.limit))
			} else {
				b.WriteString(" |\n")
			}
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "A creation is tried up to %d times on a conflict, each time on other counters: one in %s fails all %d and answers 409, which the client retries.\n",
		dynamo.ApplyAttempts, number(math.Round(1/math.Pow(conflictChance(), float64(dynamo.ApplyAttempts)))), dynamo.ApplyAttempts)
	fmt.Fprintf(&b, "Offboarding during the import writes each of the %d tenant counters' status with up to %d tries: one counter in %s fails them all, and the offboarding answers 409, which the operator retries.\n",
		dynamo.CounterShards, dynamo.StatusAttempts, number(math.Round(1/math.Pow(statusConflictChance(), float64(dynamo.StatusAttempts)))))
	return b.String()
}

const (
	scaleBegin = "<!-- begin generated: go test ./stack -run TestScale -update (in infra/) -->\n"
	scaleEnd   = "<!-- end generated -->\n"
)

// TestScale: every figure of every scenario is under its limit, and
// docs/scale.md shows exactly the figures the code gives.
func TestScale(t *testing.T) {
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	m := model{gw: gw, ttl: float64(gw.Authorizer.CacheTTLSeconds)}
	for _, rows := range m.tables() {
		for _, f := range rows {
			for i, v := range f.values {
				if f.limit > 0 && v > f.limit {
					t.Errorf("%s, %s: %s over its limit %s", scenarios[i].name, f.name, f.format(v), number(f.limit))
				}
			}
		}
	}
	if failures := math.Pow(conflictChance(), float64(dynamo.ApplyAttempts)); failures > 1e-4 {
		t.Errorf("one bulk-import creation in %.0f fails every try", 1/failures)
	}
	if failures := dynamo.CounterShards * math.Pow(statusConflictChance(), float64(dynamo.StatusAttempts)); failures > 1e-6 {
		t.Errorf("one offboarding during a bulk import in %.0f fails", 1/failures)
	}

	path := filepath.Join("..", "..", "docs", "scale.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok := strings.Cut(string(doc), scaleBegin)
	_, after, ok2 := strings.Cut(rest, scaleEnd)
	if !ok || !ok2 {
		t.Fatalf("%s lacks the generated section's markers", path)
	}
	want := before + scaleBegin + m.render() + scaleEnd + after
	if *updateScale {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(doc) != want {
		t.Errorf("docs/scale.md does not show the model's figures; run `go test ./stack -run TestScale -update` in infra/ and read the difference")
	}
}
