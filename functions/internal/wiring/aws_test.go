package wiring

import (
	"testing"
)

func TestLambdaAWSConfig(t *testing.T) {
	env := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}
	cfg, err := lambdaAWSConfig(func(k string) string { return env[k] })
	if err != nil || cfg.Region != "eu-west-1" {
		t.Fatalf("config: %+v %v", cfg, err)
	}
	if cfg.BaseEndpoint != nil {
		t.Errorf("an endpoint without AWS_ENDPOINT_URL: %s", *cfg.BaseEndpoint)
	}
	env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:8000"
	if cfg, _ := lambdaAWSConfig(func(k string) string { return env[k] }); cfg.BaseEndpoint == nil || *cfg.BaseEndpoint != env["AWS_ENDPOINT_URL"] {
		t.Errorf("AWS_ENDPOINT_URL not honoured: %v", cfg.BaseEndpoint)
	}
	env["AWS_LAMBDA_FUNCTION_NAME"] = "keyward-prod-authorizer"
	if cfg, _ := lambdaAWSConfig(func(k string) string { return env[k] }); cfg.BaseEndpoint != nil {
		t.Errorf("AWS_ENDPOINT_URL honoured in Lambda: %s", *cfg.BaseEndpoint)
	}
	delete(env, "AWS_LAMBDA_FUNCTION_NAME")
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil || creds.AccessKeyID != "AKIDEXAMPLE" || creds.SecretAccessKey != "secret" || creds.SessionToken != "token" {
		t.Fatalf("credentials: %+v %v", creds, err)
	}
	for _, missing := range []string{"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		without := func(k string) string {
			if k == missing {
				return ""
			}
			return env[k]
		}
		if _, err := lambdaAWSConfig(without); err == nil {
			t.Errorf("started without %s", missing)
		}
	}
}
