// Command benchreport runs the decision benchmarks and the HMAC floor in
// one run (make bench) and prints each figure as a ratio to the floor,
// beside its target (BENCHMARKS.md, issue 17): the median of -count runs
// of each, so a noisy run on a shared machine moves the figure little.
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

// target is one benchmark measured against the floor.
type target struct {
	bench, what string
	max         float64 // the largest ratio to the floor the target allows; 0 for none
}

const floor = "BenchmarkHMACFloor"

var targets = []target{
	{"BenchmarkAuthorize", "one allowed decision, with its share of the decision log and metrics", 8},
	{"BenchmarkAuthorizeRefused", "one refused decision, with its own log line", 8},
	{"BenchmarkAuthorizeUnlogged", "one allowed decision, no decision log", 4},
}

// result is a benchmark line of go test: name-GOMAXPROCS, iterations, ns/op.
var result = regexp.MustCompile(`^(Benchmark\w+)-\d+\s+\d+\s+([0-9.]+) ns/op`)

func main() {
	count := flag.Int("count", 5, "runs of each benchmark")
	flag.Parse()
	names := []string{floor}
	for _, t := range targets {
		names = append(names, t.bench)
	}
	pattern := "^(" + strings.Join(names, "|") + ")$"
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", pattern, "-count", strconv.Itoa(*count), "./pkg/pepper", "./pkg/authorizer")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchreport: %v\n%s", err, out)
		os.Exit(1)
	}
	runs := map[string][]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := result.FindStringSubmatch(sc.Text()); m != nil {
			ns, _ := strconv.ParseFloat(m[2], 64)
			runs[m[1]] = append(runs[m[1]], ns)
		}
	}
	base := median(runs[floor])
	if base == 0 {
		fmt.Fprintf(os.Stderr, "benchreport: no %s result in:\n%s", floor, out)
		os.Exit(1)
	}
	fmt.Printf("%-28s %10s %8s %8s  %s\n", "benchmark", "median", "ratio", "target", "what")
	fmt.Printf("%-28s %8.0f ns %8s %8s  %s\n", floor, base, "1.0×", "", "one HMAC-SHA256 of a token: the floor")
	for _, t := range targets {
		m := median(runs[t.bench])
		ratio := m / base
		verdict := "met"
		if ratio > t.max {
			verdict = "NOT MET"
		}
		fmt.Printf("%-28s %8.0f ns %7.1f× %7s×  %s (%s)\n", t.bench, m, ratio, strconv.FormatFloat(t.max, 'f', -1, 64), t.what, verdict)
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
