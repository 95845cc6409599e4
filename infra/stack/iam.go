package stack

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/keyevents"
)

// statement is one Allow statement.
func statement(sid string, actions, resources []string, conditions map[string]any) awsiam.PolicyStatement {
	p := &awsiam.PolicyStatementProps{
		Sid:       jsii.String(sid),
		Actions:   jsii.Strings(actions...),
		Resources: jsii.Strings(resources...),
	}
	if conditions != nil {
		p.Conditions = &conditions
	}
	return awsiam.NewPolicyStatement(p)
}

// logStatement lets a function write to its own log group, which exists
// already (no logs:CreateLogGroup). The group's ARN ends in ":*", which
// covers its streams.
func logStatement(group awslogs.LogGroup) awsiam.PolicyStatement {
	return statement("Logs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, []string{*group.LogGroupArn()}, nil)
}

// apigatewayARN is an API Gateway management resource in this region.
func apigatewayARN(path string) string {
	return "arn:" + *awscdk.Aws_PARTITION() + ":apigateway:" + *awscdk.Aws_REGION() + "::" + path
}

// flushStatement allows FlushStageAuthorizersCache on the stage.
func (k *keyward) flushStatement() awsiam.PolicyStatement {
	return statement("FlushAuthorizerCache", []string{"apigateway:DELETE"},
		[]string{apigatewayARN("/restapis/" + *k.api.RestApiId() + "/stages/" + k.s.Stage + "/cache/authorizers")}, nil)
}

// permissions gives each function exactly the calls its code makes
// (functions/*/main.go and the packages they wire), on its resources
// only. The pepper key's permissions are in its key policy (keys()).
//
// DynamoDB: transactions (store.Apply's TransactWriteItems) are
// authorized as their parts, PutItem and UpdateItem; there is no
// TransactWriteItems action in IAM.
func (k *keyward) permissions() {
	table := *k.table.TableArn()
	// The table is encrypted with the table key. DynamoDB decrypts the
	// table's data key on the caller's behalf, so each caller may
	// kms:Decrypt that key, and only through DynamoDB.
	tableKey := func() awsiam.PolicyStatement {
		return statement("TableKeyThroughDynamoDB", []string{"kms:Decrypt"}, []string{*k.tableKey.KeyArn()},
			map[string]any{"StringEquals": map[string]any{
				"kms:ViaService": "dynamodb." + *awscdk.Aws_REGION() + "." + *awscdk.Aws_URL_SUFFIX(),
			}})
	}
	add := func(fn string, statements ...awsiam.PolicyStatement) {
		for _, s := range statements {
			k.roles[fn].AddToPolicy(s)
		}
	}
	for _, fn := range Functions {
		add(fn, logStatement(k.logGroups[fn]))
	}

	// authorizer: GetKey (GetItem), TouchKey and RehashKey (UpdateItem),
	// ListPeppers when a new pepper version appears (Query).
	add(FnAuthorizer,
		statement("Table", []string{"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}, []string{table}, nil),
		tableKey(),
	)

	// admin: keys, tenants and their counters, audit, idempotency
	// records, peppers, job checkpoints (bulk revocations resume); gsi1 for
	// a tenant's keys and one key's audit entries, gsi3 for a member's,
	// and BatchGetItem for the items those keys-only indexes name; API
	// keys and usage-plan keys for rate limits; the stage's authorizer
	// cache; the console's client secret (its secret only: the stack's,
	// or the one oidcClientSecretArn names).
	var planKeys, planKey []string
	for _, t := range k.s.Gateway.RateLimitTiers {
		id := *k.plans[t.Name].UsagePlanId()
		planKeys = append(planKeys, apigatewayARN("/usageplans/"+id+"/keys"))
		planKey = append(planKey, apigatewayARN("/usageplans/"+id+"/keys/*"))
	}
	add(FnAdmin,
		statement("Table", []string{"dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"}, []string{table}, nil),
		statement("Indexes", []string{"dynamodb:Query"}, []string{k.indexARN(indexTenant), k.indexARN(indexMember)}, nil),
		tableKey(),
		// GetApiKeys, CreateApiKey.
		statement("ApiKeys", []string{"apigateway:GET", "apigateway:POST"}, []string{apigatewayARN("/apikeys")}, nil),
		// UpdateApiKey (enable), DeleteApiKey.
		statement("ApiKey", []string{"apigateway:DELETE", "apigateway:PATCH"}, []string{apigatewayARN("/apikeys/*")}, nil),
		// GetUsagePlanKeys, CreateUsagePlanKey.
		statement("UsagePlanKeys", []string{"apigateway:GET", "apigateway:POST"}, planKeys, nil),
		// DeleteUsagePlanKey.
		statement("UsagePlanKey", []string{"apigateway:DELETE"}, planKey, nil),
		k.flushStatement(),
		// The console's OIDC client secret, read once at start.
		statement("ConsoleClientSecret", []string{"secretsmanager:GetSecretValue"}, []string{k.signIn.secretARN}, nil),
	)

	// rotation: ListPeppers (Query), CreatePepper (PutItem), RetirePepper
	// and key changes (UpdateItem, PutItem), ScanKeys (Scan), job
	// checkpoints (GetItem, PutItem, and DeleteItem when a run finishes);
	// gsi2 for the keys due to expire, and BatchGetItem for the keys it
	// names; deleting dead keys' API keys; the stage's authorizer cache,
	// which the expiry sweep flushes.
	add(FnJobs,
		statement("Table", []string{"dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:UpdateItem"}, []string{table}, nil),
		statement("ExpiryIndex", []string{"dynamodb:Query"}, []string{k.indexARN(indexExpiry)}, nil),
		tableKey(),
		// GetApiKeys.
		statement("ApiKeys", []string{"apigateway:GET"}, []string{apigatewayARN("/apikeys")}, nil),
		// DeleteApiKey.
		statement("ApiKey", []string{"apigateway:DELETE"}, []string{apigatewayARN("/apikeys/*")}, nil),
		k.flushStatement(),
	)

	// usage: the keys (GetItem), their usage hours and watches (GetItem,
	// PutItem, Query), the tenant's contact (GetItem) and the alerts'
	// audit entries (PutItem).
	add(FnUsage,
		statement("Table", []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"}, []string{table}, nil),
		tableKey(),
	)

	// publisher: what Lambda's event source mapping reads the stream
	// with, PutEvents on its bus (source keyward only), and the failure
	// destination.
	add(FnPublisher,
		statement("Stream", []string{"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}, []string{*k.table.TableStreamArn()}, nil),
		statement("ListStreams", []string{"dynamodb:ListStreams"}, []string{table + "/stream/*"}, nil),
		tableKey(),
		statement("PutEvents", []string{"events:PutEvents"}, []string{*k.bus.EventBusArn()},
			map[string]any{"StringEquals": map[string]any{"events:source": keyevents.Source}}),
		statement("DeadLetters", []string{"sqs:SendMessage"}, []string{*k.dlq.QueueArn()}, nil),
	)
}
