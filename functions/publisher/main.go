// Command publisher consumes the table's DynamoDB stream and publishes the
// event of every new audit entry to the EventBridge bus. Wiring only.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/keyward/keyward/internal/cloud"
	"github.com/keyward/keyward/pkg/events"
)

func main() {
	log := cloud.Logger()
	bus := os.Getenv("KEYWARD_EVENT_BUS")
	if bus == "" {
		cloud.Fatal(log, "configuration", errors.New("KEYWARD_EVENT_BUS must be set"))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		cloud.Fatal(log, "aws configuration", err)
	}
	h := events.StreamHandler{Publisher: events.EventBridge{Client: eventbridge.NewFromConfig(awsCfg), Bus: bus}, Logger: log}
	lambda.Start(h.Handle)
}
