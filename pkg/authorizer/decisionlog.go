package authorizer

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/pkg/apikey"
)

// MaxBatch is how many allowed decisions one metrics line carries at most:
// the Embedded Metric Format takes up to 100 values per metric.
const MaxBatch = 100

// MaxBatchAge is how long an allowed decision may wait in a batch before
// its metrics line is written, checked at every decision and at the end of
// each; an execution environment frozen with a batch writes it at its
// next decision, stamped with the batch's first decision's time.
const MaxBatchAge = 10 * time.Second

// decisionLog writes the decisions as JSON lines with their CloudWatch
// Embedded Metric Format header (_aws), so that metrics cost no API calls.
// Every refusal and failure gets a line of its own. Allowed decisions,
// the bulk of the traffic and each already in API Gateway's access log
// (principal, tenant, status), are counted into batches of up to MaxBatch,
// one line each, written when full, older than MaxBatchAge, or flushed: the
// same metrics (every latency a value of its own) for a fraction of the
// bytes; only an environment that ends without SIGTERM (a crash) loses
// its last batch. Lines are appended by hand into a reused buffer: this is the
// authorizer's hottest path.
type decisionLog struct {
	w   io.Writer
	now func() time.Time

	mu        sync.Mutex
	buf       []byte
	allowed   int
	latencies []byte // the batch's latency values, comma-separated
	first     time.Time
}

func newDecisionLog(w io.Writer, now func() time.Time) *decisionLog {
	return &decisionLog{w: w, now: now, buf: make([]byte, 0, 1024), latencies: make([]byte, 0, 8*MaxBatch)}
}

// record writes d's line, or adds an allowed decision to the batch; now
// is when the decision was made.
func (l *decisionLog) record(d decision, requestID, method, resource, sourceIP string, now time.Time, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.allowed > 0 && now.Sub(l.first) >= MaxBatchAge {
		l.flushLocked(now)
	}
	if d.outcome == "allow" {
		if l.allowed == 0 {
			l.first = now
		} else {
			l.latencies = append(l.latencies, ',')
		}
		l.allowed++
		l.latencies = appendMillis(l.latencies, took)
		if l.allowed >= MaxBatch {
			l.flushLocked(now)
		}
		return
	}
	level := "INFO"
	if d.err != nil {
		level = "ERROR"
	}
	b := l.head(now, level, "authorization decision", d.outcome)
	b = appendField(b, "reason", d.reason)
	b = appendField(b, "request_id", requestID)
	b = appendField(b, "method", method)
	b = appendField(b, "resource", resource)
	b = append(b, `,"latency_ms":`...)
	b = appendMillis(b, took)
	b = append(b, `,"decisions":1`...)
	b = appendEMF(b, now)
	if d.keyID != "" {
		b = appendField(b, "key_id", apikey.PublicID(d.keyID))
		b = appendField(b, "tenant_id", d.tenantID)
		// Where attempts on a real key come from (functions/usage
		// reads wrong secrets from these lines).
		b = appendField(b, "source_ip", sourceIP)
	}
	if d.err != nil {
		b = appendField(b, "error", d.err.Error())
	}
	l.write(append(b, "}\n"...))
}

// flush writes the batch of allowed decisions, if any.
func (l *decisionLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked(l.now())
}

// flushDue writes the batch once it is MaxBatchAge old: called as a
// decision ends, so that a batch does not wait for a later decision.
func (l *decisionLog) flushDue(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.allowed > 0 && now.Sub(l.first) >= MaxBatchAge {
		l.flushLocked(now)
	}
}

func (l *decisionLog) flushLocked(now time.Time) {
	if l.allowed == 0 {
		return
	}
	b := l.head(now, "INFO", "authorization decisions", "allow")
	b = append(b, `,"decisions":`...)
	b = strconv.AppendInt(b, int64(l.allowed), 10)
	b = append(b, `,"latency_ms":[`...)
	b = append(b, l.latencies...)
	b = append(b, ']')
	b = appendEMF(b, l.first)
	l.write(append(b, "}\n"...))
	l.allowed, l.latencies = 0, l.latencies[:0]
}

// head starts a line in l.buf as slog's JSON handler would.
func (l *decisionLog) head(now time.Time, level, msg, outcome string) []byte {
	b := append(l.buf[:0], `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"`...)
	b = append(b, level...)
	b = append(b, '"')
	b = appendField(b, "msg", msg)
	return appendField(b, "outcome", outcome)
}

func (l *decisionLog) write(b []byte) {
	l.buf = b[:0]
	_, _ = l.w.Write(b) // a log that cannot be written must not fail the request
}

// appendEMF appends the _aws member: the decisions and latency by outcome.
func appendEMF(b []byte, at time.Time) []byte {
	b = append(b, `,"_aws":{"Timestamp":`...)
	b = strconv.AppendInt(b, at.UnixMilli(), 10)
	b = append(b, `,"CloudWatchMetrics":`...)
	return append(append(b, emfDirectives...), '}')
}

func appendMillis(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendString appends s as a JSON string, as encoding/json would: control
// characters, quotes, backslashes and the line separators escaped, invalid
// UTF-8 replaced.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
