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

	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/keyevents"
)

func main() {
	log := wiring.Logger()
	bus := os.Getenv("KEYWARD_EVENT_BUS")
	if bus == "" {
		wiring.Fatal(log, "configuration", errors.New("KEYWARD_EVENT_BUS must be set"))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		wiring.Fatal(log, "aws configuration", err)
	}
	h := keyevents.StreamHandler{Publisher: keyevents.EventBridge{Client: eventbridge.NewFromConfig(awsCfg), Bus: bus}, Logger: log}
	lambda.Start(h.Handle)
}
