package stack

import (
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscognito"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/config"
)

// The user pool's custom attributes: in an ID token, "custom:" + their
// name, the default claims of config.DefaultTenantClaim and
// config.DefaultRoleClaim.
const (
	AttrTenantID = "tenant_id"
	AttrRole     = "role"
)

// The console client's token and session lifetimes. The console keeps a
// session of its own (12 hours at most, 30 minutes idle) and only reads
// the ID token once, at the callback, so the tokens need not outlive a
// sign-in: the shortest lifetimes Cognito allows for the tokens, a
// refresh token the console never uses, and five minutes on the hosted
// pages (from the sign-in form to the callback, time to set up an
// authenticator app on a first sign-in).
const (
	ConsoleIDTokenValidity      = time.Hour
	ConsoleAccessTokenValidity  = time.Hour
	ConsoleRefreshTokenValidity = time.Hour
	ConsoleAuthSessionValidity  = 5 * time.Minute
)

// signIn is how members sign in to the console: the provider, the client
// and where its secret is, for the admin function's environment.
type signIn struct {
	issuer, clientID, secretARN string

	// With the stack's user pool.
	pool   awscognito.UserPool
	domain awscognito.UserPoolDomain
}

// apiBase is the URL the API is reached at, without a trailing slash: the
// custom domain, or the stage's URL.
func (k *keyward) apiBase() string {
	if k.s.DomainName != "" {
		return "https://" + k.s.DomainName
	}
	return "https://" + *k.api.RestApiId() + ".execute-api." + *awscdk.Aws_REGION() + "." + *awscdk.Aws_URL_SUFFIX() + "/" + k.s.Stage
}

// consoleURL is the console's base URL (config.EnvConsoleURL).
func (k *keyward) consoleURL() string { return k.apiBase() + config.ConsolePath }

// identity sets up the members' sign-in: an OIDC provider of the
// deployer's, or by default an Amazon Cognito user pool with a hosted
// sign-in domain and the console's app client, whose secret it keeps in
// Secrets Manager, so that the admin function reads a secret ARN either
// way.
func (k *keyward) identity() {
	if !k.s.Cognito() {
		k.signIn = signIn{issuer: k.s.OIDCIssuer, clientID: k.s.OIDCClientID, secretARN: k.s.OIDCClientSecretARN}
		return
	}
	// Members are invited by their administrators (AdminCreateUser with
	// the tenant and the role), never sign themselves up; they sign in
	// with their email address. The tenant and the role are mutable, so
	// that an administrator can change a role, but no app client may
	// write them (WriteAttributes below): a member cannot change their
	// own tenant or role.
	pool := awscognito.NewUserPool(k.stack, jsii.String("Members"), &awscognito.UserPoolProps{
		UserPoolName:      jsii.String(k.name("members")),
		SelfSignUpEnabled: jsii.Bool(false),
		SignInAliases:     &awscognito.SignInAliases{Email: jsii.Bool(true)},
		AutoVerify:        &awscognito.AutoVerifiedAttrs{Email: jsii.Bool(true)},
		StandardAttributes: &awscognito.StandardAttributes{
			Email: &awscognito.StandardAttribute{Required: jsii.Bool(true), Mutable: jsii.Bool(true)},
		},
		CustomAttributes: &map[string]awscognito.ICustomAttribute{
			AttrTenantID: awscognito.NewStringAttribute(&awscognito.StringAttributeProps{MinLen: jsii.Number(1), MaxLen: jsii.Number(64), Mutable: jsii.Bool(true)}),
			AttrRole:     awscognito.NewStringAttribute(&awscognito.StringAttributeProps{MinLen: jsii.Number(1), MaxLen: jsii.Number(32), Mutable: jsii.Bool(true)}),
		},
		PasswordPolicy: &awscognito.PasswordPolicy{
			MinLength: jsii.Number(12), RequireLowercase: jsii.Bool(true), RequireUppercase: jsii.Bool(true),
			RequireDigits: jsii.Bool(true), RequireSymbols: jsii.Bool(false),
			TempPasswordValidity: awscdk.Duration_Days(jsii.Number(3)),
		},
		Mfa:                awscognito.Mfa_OPTIONAL,
		MfaSecondFactor:    &awscognito.MfaSecondFactor{Otp: jsii.Bool(true), Sms: jsii.Bool(false)},
		AccountRecovery:    awscognito.AccountRecovery_EMAIL_ONLY,
		DeletionProtection: jsii.Bool(k.s.Production),
		RemovalPolicy:      k.removal(),
	})
	// Cognito domain prefixes are global to a region, across accounts:
	// the default adds the first part of the stack's id, unique to this
	// stack and stable while it lives.
	prefix := k.s.CognitoDomainPrefix
	if prefix == "" {
		stackGUID := awscdk.Fn_Select(jsii.Number(2), awscdk.Fn_Split(jsii.String("/"), awscdk.Aws_STACK_ID(), nil))
		prefix = k.s.StackName() + "-" + *awscdk.Fn_Select(jsii.Number(0), awscdk.Fn_Split(jsii.String("-"), stackGUID, nil))
	}
	domain := pool.AddDomain(jsii.String("SignIn"), &awscognito.UserPoolDomainOptions{
		CognitoDomain: &awscognito.CognitoDomainOptions{DomainPrefix: jsii.String(prefix)},
	})

	// The console is a confidential client (the admin function holds the
	// secret) of the authorization code grant only, on the hosted pages;
	// Cognito honours PKCE on the code grant whenever the client sends a
	// code_challenge. The ID token carries the tenant and the role.
	urls := config.Deployment{ConsoleURL: k.consoleURL()}
	scopes := []awscognito.OAuthScope{awscognito.OAuthScope_OPENID(), awscognito.OAuthScope_EMAIL(), awscognito.OAuthScope_PROFILE()}
	minutes := func(d time.Duration) awscdk.Duration { return awscdk.Duration_Minutes(jsii.Number(d.Minutes())) }
	client := pool.AddClient(jsii.String("ConsoleClient"), &awscognito.UserPoolClientOptions{
		UserPoolClientName: jsii.String(k.name("console")),
		GenerateSecret:     jsii.Bool(true),
		// No password flows from outside the hosted pages: SRP needs the
		// client secret's hash, which only the admin function can make.
		AuthFlows: &awscognito.AuthFlow{UserSrp: jsii.Bool(true)},
		OAuth: &awscognito.OAuthSettings{
			Flows:        &awscognito.OAuthFlows{AuthorizationCodeGrant: jsii.Bool(true), ImplicitCodeGrant: jsii.Bool(false), ClientCredentials: jsii.Bool(false)},
			Scopes:       &scopes,
			CallbackUrls: jsii.Strings(urls.ConsoleCallbackURL()),
			LogoutUrls:   jsii.Strings(urls.ConsoleLogoutURL()),
		},
		SupportedIdentityProviders: &[]awscognito.UserPoolClientIdentityProvider{awscognito.UserPoolClientIdentityProvider_COGNITO()},
		IdTokenValidity:            minutes(ConsoleIDTokenValidity),
		AccessTokenValidity:        minutes(ConsoleAccessTokenValidity),
		RefreshTokenValidity:       minutes(ConsoleRefreshTokenValidity),
		AuthSessionValidity:        minutes(ConsoleAuthSessionValidity),
		PreventUserExistenceErrors: jsii.Bool(true),
		EnableTokenRevocation:      jsii.Bool(true),
		ReadAttributes: awscognito.NewClientAttributes().
			WithStandardAttributes(&awscognito.StandardAttributesMask{Email: jsii.Bool(true), EmailVerified: jsii.Bool(true), Fullname: jsii.Bool(true)}).
			WithCustomAttributes(jsii.String(AttrTenantID), jsii.String(AttrRole)),
		WriteAttributes: awscognito.NewClientAttributes().
			WithStandardAttributes(&awscognito.StandardAttributesMask{Email: jsii.Bool(true), Fullname: jsii.Bool(true)}),
	})
	// The client's secret, from CloudFormation's own attribute (no custom
	// resource), into a secret the admin function may read.
	cfnClient := client.Node().DefaultChild().(awscognito.CfnUserPoolClient)
	secret := awssecretsmanager.NewSecret(k.stack, jsii.String("ConsoleClientSecret"), &awssecretsmanager.SecretProps{
		Description:       jsii.String("keyward " + k.s.Stage + ": the console's OpenID Connect client secret (the Cognito app client's)"),
		SecretStringValue: awscdk.SecretValue_ResourceAttribute(cfnClient.AttrClientSecret()),
		RemovalPolicy:     awscdk.RemovalPolicy_DESTROY,
	})
	k.signIn = signIn{
		issuer:    "https://cognito-idp." + *awscdk.Aws_REGION() + "." + *awscdk.Aws_URL_SUFFIX() + "/" + *pool.UserPoolId(),
		clientID:  *client.UserPoolClientId(),
		secretARN: *secret.SecretArn(),
		pool:      pool,
		domain:    domain,
	}
}
