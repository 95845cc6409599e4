package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Exit codes of the CLI's commands (docs/cli.md).
const (
	exitOK      = 0
	exitFailure = 1 // a failure: 5xx, the network, a local error
	exitUsage   = 2 // the command line is wrong
	exitRefused = 3 // the API refused the request (4xx)
)

// apiError is the admin API's error envelope.
type apiError struct {
	Status  int    `json:"-"`
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param"`
	// RetryAfter is the Retry-After header's delay, if any.
	RetryAfter time.Duration `json:"-"`
}

func (e *apiError) Error() string {
	msg := e.Message
	if e.Param != "" {
		msg += " (param: " + e.Param + ")"
	}
	if e.Code != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, e.Code, msg)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Type, msg)
}

// signer authorizes one request: a management key, the local operator
// token, or AWS SigV4.
type signer func(ctx context.Context, r *http.Request, body []byte) error

func bearer(token string) signer {
	return func(_ context.Context, r *http.Request, _ []byte) error {
		r.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}

// sigV4 signs for API Gateway (execute-api) with credentials from the
// standard chain, in the region of the endpoint's host or the AWS
// configuration's.
func sigV4(creds aws.CredentialsProvider, region string, now func() time.Time) signer {
	s := v4.NewSigner()
	return func(ctx context.Context, r *http.Request, body []byte) error {
		c, err := creds.Retrieve(ctx)
		if err != nil {
			return fmt.Errorf("AWS credentials: %w", err)
		}
		sum := sha256.Sum256(body)
		return s.SignHTTP(ctx, c, r, hex.EncodeToString(sum[:]), "execute-api", region, now())
	}
}

// regionOf is the region in an execute-api host name
// (<api>.execute-api.<region>.amazonaws.com), or "".
func regionOf(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	parts := strings.Split(u.Hostname(), ".")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "execute-api" {
			return parts[i+1]
		}
	}
	return ""
}

// client calls the admin API.
type client struct {
	endpoint string // the stage's base URL, without a trailing slash
	http     *http.Client
	sign     signer
}

// maxResponse bounds an answer the CLI reads.
const maxResponse = 8 << 20

// call sends one request and decodes a 2xx answer into out (if not nil);
// any other answer is an *apiError.
func (c *client) call(ctx context.Context, method, path string, body any, idempotencyKey string, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	if err := c.sign(ctx, req, raw); err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var env struct {
			Error apiError `json:"error"`
		}
		e := &env.Error
		if json.Unmarshal(answer, &env) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(answer))
		}
		e.Status = resp.StatusCode
		if s, err := time.ParseDuration(resp.Header.Get("Retry-After") + "s"); err == nil {
			e.RetryAfter = s
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what the API gives: %w", method, path, err)
	}
	return nil
}

// exitCode is the exit code for err.
func exitCode(err error) int {
	var ae *apiError
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500:
		return exitRefused
	}
	return exitFailure
}

// usageError is a wrong command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }
