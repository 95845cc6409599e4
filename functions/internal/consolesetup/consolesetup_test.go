package consolesetup

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

type fakeSecrets struct {
	value *string
	err   error
	asked string
}

func (f *fakeSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.asked = aws.ToString(in.SecretId)
	return &secretsmanager.GetSecretValueOutput{SecretString: f.value}, f.err
}

// TestClientSecret: the console's client secret is the secret's string,
// trimmed; an empty or binary secret and a failed call are errors.
func TestClientSecret(t *testing.T) {
	arn := "arn:aws:secretsmanager:eu-west-1:111122223333:secret:keyward-console-AbCdEf"
	f := &fakeSecrets{value: aws.String("s3cr3t\n")}
	if got, err := ClientSecret(t.Context(), f, arn); err != nil || got != "s3cr3t" || f.asked != arn {
		t.Errorf("secret %q, %v, asked for %q", got, err, f.asked)
	}
	for name, f := range map[string]*fakeSecrets{
		"empty":  {value: aws.String(" ")},
		"binary": {},
		"denied": {err: errors.New("AccessDeniedException")},
	} {
		if got, err := ClientSecret(t.Context(), f, arn); err == nil || !strings.Contains(err.Error(), arn) {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
}
