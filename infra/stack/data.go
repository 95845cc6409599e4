package stack

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

// PepperKeyAdminActions are what the account (and so IAM) may do with the
// pepper key: administer it, never use it. No data-plane action
// (Decrypt, Encrypt, GenerateDataKey*, ReEncrypt*) and no CreateGrant,
// which could hand one out: only the key policy's function statements
// grant those. Changing that takes kms:PutKeyPolicy, which CloudTrail
// records.
var PepperKeyAdminActions = []string{
	"kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey",
	"kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation",
	"kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListGrants",
	"kms:ListKeyPolicies", "kms:ListKeyRotations", "kms:ListResourceTags", "kms:PutKeyPolicy",
	"kms:RetireGrant", "kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion", "kms:TagResource",
	"kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
}

// PepperContextCondition binds every use of the pepper key to the pepper
// purpose (pkg/pepper.EncryptionContext).
func PepperContextCondition() map[string]any {
	return map[string]any{"StringEquals": map[string]any{"kms:EncryptionContext:purpose": pepper.Purpose}}
}

// executionRoles creates one role per function, with no managed policy:
// permissions() adds exactly what each function's code calls.
func (k *keyward) executionRoles() {
	for _, fn := range Functions {
		k.roles[fn] = awsiam.NewRole(k.stack, jsii.String(title(fn)+"Role"), &awsiam.RoleProps{
			AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
			Description: jsii.String("keyward " + fn + " function, " + k.s.Stage),
		})
	}
}

// keys creates the table's key and the pepper key, both customer managed
// with automatic rotation (KMS keeps every older key version, so old
// ciphertexts still decrypt).
func (k *keyward) keys() {
	k.tableKey = awskms.NewKey(k.stack, jsii.String("TableKey"), &awskms.KeyProps{
		Description:       jsii.String("keyward " + k.s.Stage + ": DynamoDB table encryption"),
		EnableKeyRotation: jsii.Bool(true),
		RemovalPolicy:     k.removal(),
		PendingWindow:     awscdk.Duration_Days(jsii.Number(30)),
	})

	// The pepper key's policy is the whole story of who may use it: the
	// account administers it; the authorizer and admin functions may
	// Decrypt, the jobs function may GenerateDataKeyWithoutPlaintext,
	// each only under the pepper purpose. No identity policy can add to
	// that, because the account statement delegates no use to IAM.
	// "Resource": "*" in a key policy means this key.
	this := []*string{jsii.String("*")}
	policy := awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: &[]awsiam.PolicyStatement{
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("KeyAdministration"),
			Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
			Actions:    jsii.Strings(PepperKeyAdminActions...),
			Resources:  &this,
		}),
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("UnwrapPeppers"),
			Principals: &[]awsiam.IPrincipal{k.roles[FnAuthorizer], k.roles[FnAdmin]},
			Actions:    jsii.Strings("kms:Decrypt"),
			Resources:  &this,
			Conditions: ptr(PepperContextCondition()),
		}),
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("CreatePeppers"),
			Principals: &[]awsiam.IPrincipal{k.roles[FnJobs]},
			Actions:    jsii.Strings("kms:GenerateDataKeyWithoutPlaintext"),
			Resources:  &this,
			Conditions: ptr(PepperContextCondition()),
		}),
	}})
	k.pepperKey = awskms.NewKey(k.stack, jsii.String("PepperKey"), &awskms.KeyProps{
		Description:       jsii.String("keyward " + k.s.Stage + ": wraps the API-key peppers (encryption context purpose=" + pepper.Purpose + ")"),
		Alias:             jsii.String("alias/" + k.name("pepper")),
		EnableKeyRotation: jsii.Bool(true),
		Policy:            policy,
		RemovalPolicy:     k.removal(),
		// Losing this key loses every stored key: the longest window.
		PendingWindow: awscdk.Duration_Days(jsii.Number(30)),
	})
}

// tableGeneration is the table's construct id. It changes, and so
// CloudFormation creates a new, empty table, whenever the item layout or
// the indexes change in a way the code cannot read or CloudFormation cannot
// update in place (an index's key schema or projection): generation 2 has
// sharded collections and keys-only indexes. docs/deploy.md, Upgrading.
const tableGeneration = "Table2"

// dataTable creates the table with exactly the layout pkg/store/dynamo
// expects (dynamo.CreateTable with dynamo.WithStream makes the same one
// locally).
func (k *keyward) dataTable() {
	str := awsdynamodb.AttributeType_STRING
	k.table = awsdynamodb.NewTable(k.stack, jsii.String(tableGeneration), &awsdynamodb.TableProps{
		PartitionKey: &awsdynamodb.Attribute{Name: jsii.String(dynamo.AttrPK), Type: str},
		SortKey:      &awsdynamodb.Attribute{Name: jsii.String(dynamo.AttrSK), Type: str},
		BillingMode:  awsdynamodb.BillingMode_PAY_PER_REQUEST,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		DeletionProtection:  jsii.Bool(k.s.Production),
		RemovalPolicy:       k.removal(),
		Encryption:          awsdynamodb.TableEncryption_CUSTOMER_MANAGED,
		EncryptionKey:       k.tableKey,
		TimeToLiveAttribute: jsii.String(dynamo.AttrTTL),
		// The stream is the delivery half of the event outbox.
		Stream: awsdynamodb.StreamViewType_NEW_IMAGE,
	})
	// Keys only: see dynamo.Indexes.
	for _, ix := range dynamo.Indexes {
		k.table.AddGlobalSecondaryIndex(&awsdynamodb.GlobalSecondaryIndexProps{
			IndexName:      jsii.String(ix.Name),
			PartitionKey:   &awsdynamodb.Attribute{Name: jsii.String(ix.PK), Type: str},
			SortKey:        &awsdynamodb.Attribute{Name: jsii.String(ix.SK), Type: str},
			ProjectionType: awsdynamodb.ProjectionType_KEYS_ONLY,
		})
	}
}

// The indexes by what they hold.
const (
	indexTenant = dynamo.IndexGSI1 // a tenant's keys, one key's audit entries
	indexExpiry = dynamo.IndexGSI2 // keys due to expire
	indexMember = dynamo.IndexGSI3 // a member's keys
)

// indexARN is the ARN of one of the table's indexes.
func (k *keyward) indexARN(index string) string { return *k.table.TableArn() + "/index/" + index }

func ptr[T any](v T) *T { return &v }

// title upper-cases the first letter, for construct ids.
func title(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
