// Command benchreport runs the benchmarks that issue 17 sets targets for,
// each with its baseline in the same run (make bench), and prints each
// figure as a ratio to its baseline beside its target (BENCHMARKS.md): the
// median of -count runs of each, so a noisy run on a shared machine moves
// the figure little.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// target is one benchmark measured against a baseline, or, without one,
// one of its metrics against an absolute bound.
type target struct {
	bench, base, what string
	max               float64 // the largest ratio to the baseline (or value) the target allows
	metric            string  // with no base: the metric, as go test prints its unit
}

var targets = []target{
	{"BenchmarkAuthorize", floor, "one allowed decision, with its share of the decision log and metrics", 8, ""},
	{"BenchmarkAuthorizeRefused", floor, "one refused decision, with its own log line", 8, ""},
	{"BenchmarkAuthorizeUnlogged", floor, "one allowed decision, no decision log", 4, ""},
	{"BenchmarkGateway/cache-off", "BenchmarkGateway/public", "the local gateway, the authorizer on every request, CPU per request", 1.3, ""},
	{"BenchmarkColdStart", "", "the authorizer's process from exec to its first request for work, CPU ms (needs DynamoDB Local)", 25, "cpu-ms/start"},
}

// floor is one HMAC-SHA256 of a token, the decisions' baseline.
const floor = "BenchmarkHMACFloor"

// runs are the go test invocations: packages and the benchmarks in them,
// one package at a time (-p 1), so that no two compete for the cores.
var runs = []struct {
	pattern  string
	packages []string
}{
	{"^(BenchmarkHMACFloor|BenchmarkAuthorize|BenchmarkAuthorizeRefused|BenchmarkAuthorizeUnlogged)$", []string{"./pkg/pepper", "./pkg/authorizer"}},
	{"^BenchmarkGateway$/^(public|cache-off)$", []string{"./pkg/localstack/gateway"}},
	{"^BenchmarkColdStart$", []string{"./functions/authorizer"}},
}

// result is a benchmark line of go test: name-GOMAXPROCS, iterations, ns/op
// and any further metrics ("44.7 cpu-ms/start").
var (
	result = regexp.MustCompile(`^(Benchmark[\w/-]+?)-\d+\s+\d+\s+([0-9.]+) ns/op(.*)`)
	metric = regexp.MustCompile(`([0-9.]+) ([\w/-]+)`)
)

func main() {
	count := flag.Int("count", 5, "runs of each benchmark")
	flag.Parse()
	ns := map[string][]float64{}
	for _, r := range runs {
		args := append([]string{"test", "-p", "1", "-run", "^$", "-bench", r.pattern, "-count", strconv.Itoa(*count)}, r.packages...)
		cmd := exec.Command("go", args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchreport: go %s: %v\n%s", strings.Join(args, " "), err, out)
			os.Exit(1)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if m := result.FindStringSubmatch(sc.Text()); m != nil {
				v, _ := strconv.ParseFloat(m[2], 64)
				ns[m[1]] = append(ns[m[1]], v)
				for _, mm := range metric.FindAllStringSubmatch(m[3], -1) {
					v, _ := strconv.ParseFloat(mm[1], 64)
					ns[m[1]+" "+mm[2]] = append(ns[m[1]+" "+mm[2]], v)
				}
			}
		}
	}
	fmt.Printf("%-28s %10s %-24s %8s %8s  %s\n", "benchmark", "median", "baseline", "ratio", "target", "what")
	for _, t := range targets {
		if t.base == "" {
			v := median(ns[t.bench+" "+t.metric])
			if v == 0 {
				fmt.Printf("%-28s %10s %-24s %8s %7s   %s (not run: %s)\n", t.bench, "", "", "", strconv.FormatFloat(t.max, 'f', -1, 64), t.what, "skipped")
				continue
			}
			verdict := "met"
			if v > t.max {
				verdict = "NOT MET"
			}
			fmt.Printf("%-28s %7.1f ms %-24s %8s %7s   %s (%s)\n", t.bench, v, "", "", strconv.FormatFloat(t.max, 'f', -1, 64), t.what, verdict)
			continue
		}
		m, base := median(ns[t.bench]), median(ns[t.base])
		if m == 0 || base == 0 {
			fmt.Fprintf(os.Stderr, "benchreport: no result for %s or %s\n", t.bench, t.base)
			os.Exit(1)
		}
		verdict := "met"
		if m/base > t.max {
			verdict = "NOT MET"
		}
		fmt.Printf("%-28s %7.0f ns %-24s %7.2f× %7s×  %s (%s)\n", t.bench, m, fmt.Sprintf("%s %.0f ns", strings.TrimPrefix(t.base, "Benchmark"), base),
			m/base, strconv.FormatFloat(t.max, 'f', -1, 64), t.what, verdict)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
