package wiring

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// lambdaAWSConfig is the AWS configuration of a Lambda function: the
// region and the execution role's credentials, which Lambda sets in the
// environment for the life of the execution environment
// (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime).
// The SDK's LoadDefaultConfig would find the same through its chain of
// providers, and link the SSO, STS and IMDS clients those providers use
// into every function, about a megabyte of each bootstrap.
func lambdaAWSConfig(getenv func(string) string) (aws.Config, error) {
	region, id, secret := getenv("AWS_REGION"), getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if region == "" || id == "" || secret == "" {
		return aws.Config{}, errors.New("AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set, as Lambda sets them")
	}
	cfg := aws.Config{
		Region:      region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(id, secret, getenv("AWS_SESSION_TOKEN"))),
	}
	// The SDK's variable for one endpoint for every service, which
	// LoadDefaultConfig honours too, outside Lambda only: the cold-start
	// harness points it at DynamoDB Local and a fake KMS, but in Lambda it
	// would let one setting send the peppers' unwrapping and the keys'
	// reads to a host of its choosing.
	if u := getenv("AWS_ENDPOINT_URL"); u != "" && getenv("AWS_LAMBDA_FUNCTION_NAME") == "" {
		cfg.BaseEndpoint = aws.String(u)
	}
	return cfg, nil
}
