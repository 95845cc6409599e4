// Command publisher consumes the table's DynamoDB stream and publishes the
// event of every new audit entry to the EventBridge bus. Wiring only.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/keyevents"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

func main() {
	rt := wiring.Start(context.Background(), config.FnPublisher)
	h := keyevents.StreamHandler{
		Decode:    dynamo.AuditFromStream,
		Publisher: keyevents.EventBridge{Client: eventbridge.NewFromConfig(rt.AWS), Bus: rt.Config.EventBus},
		Logger:    rt.Log,
	}
	lambda.Start(h.Handle)
}
