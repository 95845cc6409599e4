package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/keyward/keyward/pkg/admin"
	keyevents "github.com/keyward/keyward/pkg/keyevents"
	"github.com/keyward/keyward/pkg/localstack"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

// invoke runs one function's handler once on an event file against the
// local data, as `sam local invoke` does, and prints its response. In the
// event, ${TOKEN} stands for the TOKEN environment variable and ${BASIC}
// for base64("$TOKEN:").
func invoke(args []string) error {
	fs := flag.NewFlagSet("invoke", flag.ExitOnError)
	o, ttl := stackFlags(fs)
	fn := fs.String("fn", "", "function: authorizer, admin, jobs, publisher or usage")
	eventFile := fs.String("event", "", "event JSON file, for example events/authorizer-bearer.json")
	_ = fs.Parse(args)
	if *fn == "" || *eventFile == "" {
		return fmt.Errorf("invoke needs -fn and -event")
	}
	if err := applyTTL(o, *ttl); err != nil {
		return err
	}
	raw, err := os.ReadFile(*eventFile)
	if err != nil {
		return err
	}
	token := os.Getenv("TOKEN")
	raw = []byte(strings.NewReplacer("${TOKEN}", token, "${BASIC}", base64.StdEncoding.EncodeToString([]byte(token+":"))).Replace(string(raw)))

	o.Logger, o.Decisions = slog.New(slog.NewJSONHandler(os.Stderr, nil)), os.Stderr
	ctx := context.Background()
	stack, err := localstack.Open(ctx, *o)
	if err != nil {
		return err // a store held by a running make dev says so itself
	}
	defer stack.Close()
	stack.PrintSecrets(os.Stderr)

	var out any
	switch *fn {
	case "authorizer":
		var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("event: %w", err)
		}
		resp, err := stack.Authorizer.Authorize(ctx, ev)
		stack.Authorizer.Flush()
		out = resp
		if err != nil {
			out = map[string]string{"errorMessage": err.Error(), "errorType": "errorString"}
		}
	case "admin":
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("event: %w", err)
		}
		resp, err := httpadapter.New(admin.FromAPIGateway(localstack.OperatorRole, stack.Admin)).ProxyWithContext(ctx, ev)
		if err != nil {
			return err
		}
		out = resp
	case "jobs":
		var in struct {
			Job string `json:"job"`
		}
		if err := json.Unmarshal(raw, &in); err != nil {
			return fmt.Errorf("event: %w", err)
		}
		r, err := stack.Jobs.Run(ctx, in.Job)
		if err != nil {
			return err
		}
		out = r
	case "publisher":
		// The stream's events go where the local stack publishes: the log
		// and events.jsonl in the data directory.
		var ev events.DynamoDBEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("event: %w", err)
		}
		h := keyevents.StreamHandler{Decode: dynamo.AuditFromStream, Publisher: stack.Events, Logger: o.Logger}
		resp, err := h.Handle(ctx, ev)
		if err != nil {
			return err
		}
		out = resp
	case "usage":
		// The delivery's minutes are written at once (the function
		// writes a minute once it has ended, and all at shutdown).
		var ev events.CloudwatchLogsEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("event: %w", err)
		}
		if err := stack.Usage.HandleLogs(ctx, ev); err != nil {
			return err
		}
		if err := stack.Usage.Flush(ctx, time.Now(), true); err != nil {
			return err
		}
		out = map[string]string{"result": "counted"}
	default:
		return fmt.Errorf("unknown function %q: authorizer, admin, jobs, publisher or usage", *fn)
	}
	// The samples act on the real local data: say what stays.
	if note, ok := invokeNotes[*fn]; ok {
		fmt.Fprintf(os.Stderr, "keyward invoke: "+note+"\n", o.DataDir)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// invokeNotes say what an invocation left in the data directory.
var invokeNotes = map[string]string{
	"admin":     "the admin function ran against the data in %s: what it changed there (a key it created) is real",
	"jobs":      "the job ran against the data in %s: what it changed there is real",
	"publisher": "the sample's events were published to %s/events.jsonl beside the real ones",
	"usage":     "the sample's usage was written to the data in %s (for a key id that matches none of yours)",
}
