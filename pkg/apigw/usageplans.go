package apigw

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/apigateway/types"
)

// keyTypeAPIKey is the only usage plan key type API Gateway has.
const keyTypeAPIKey = "API_KEY"

// pageSize is the largest page GetApiKeys and GetUsagePlanKeys return.
const pageSize = 500

// UsagePlans provisions the API Gateway API keys that carry keyward's rate
// limits. With API key source AUTHORIZER, the authorizer returns a key's
// usage identity (package usage) as usageIdentifierKey, and API Gateway
// counts the request against the usage plan holding the API key whose
// value equals it. Each identity's API key is named and valued after it.
type UsagePlans struct {
	client  API
	plans   map[string]string // rate-limit tier → usage plan id
	planIDs []string          // distinct, sorted: the plans a key may have to leave
	o       options
}

// NewUsagePlans returns a UsagePlans for the usage plans of the rate-limit
// tiers (pkg/config/gateway.json "rate_limit_tiers"), keyed by tier name.
func NewUsagePlans(client API, plans map[string]string, opts ...Option) *UsagePlans {
	return &UsagePlans{
		client:  client,
		plans:   maps.Clone(plans),
		planIDs: slices.Compact(slices.Sorted(maps.Values(plans))),
		o:       newOptions(opts),
	}
}

// Provision makes identity's API key exist, enabled, in the usage plan of
// tier and in no other known plan. It is idempotent: when all that holds
// already, it only reads.
func (u *UsagePlans) Provision(ctx context.Context, identity, tier string) error {
	if err := u.provision(ctx, identity, tier); err != nil {
		return fmt.Errorf("apigw: provision %s: %w", identity, err)
	}
	return nil
}

func (u *UsagePlans) provision(ctx context.Context, identity, tier string) error {
	target, ok := u.plans[tier]
	if !ok {
		return fmt.Errorf("unknown rate-limit tier %q", tier)
	}
	if identity == "" {
		return errors.New("empty identity")
	}
	keyID, err := u.ensureKey(ctx, identity)
	if err != nil {
		return err
	}
	// Leave the other plans first: API Gateway refuses a key in two plans
	// of the same stage.
	for _, plan := range u.planIDs {
		if plan == target {
			continue
		}
		in, err := u.inPlan(ctx, plan, identity, keyID)
		if err != nil {
			return err
		}
		if !in {
			continue
		}
		_, err = call(ctx, &u.o, "delete usage plan key", func(ctx context.Context) (*apigateway.DeleteUsagePlanKeyOutput, error) {
			return u.client.DeleteUsagePlanKey(ctx, &apigateway.DeleteUsagePlanKeyInput{UsagePlanId: &plan, KeyId: &keyID})
		})
		if err != nil && !isNotFound(err) {
			return err
		}
	}
	in, err := u.inPlan(ctx, target, identity, keyID)
	if err != nil || in {
		return err
	}
	_, err = call(ctx, &u.o, "create usage plan key", func(ctx context.Context) (*apigateway.CreateUsagePlanKeyOutput, error) {
		return u.client.CreateUsagePlanKey(ctx, &apigateway.CreateUsagePlanKeyInput{
			UsagePlanId: &target, KeyId: &keyID, KeyType: aws.String(keyTypeAPIKey),
		})
	})
	if !isConflict(err) {
		return err
	}
	// A concurrent Provision may have added it first.
	in, rerr := u.inPlan(ctx, target, identity, keyID)
	if rerr != nil || !in {
		return errors.Join(err, rerr)
	}
	return nil
}

// ensureKey returns the id of identity's API key, creating or enabling it.
func (u *UsagePlans) ensureKey(ctx context.Context, identity string) (string, error) {
	key, err := u.ownKey(ctx, identity)
	if err != nil {
		return "", err
	}
	if key == nil {
		out, cerr := call(ctx, &u.o, "create api key", func(ctx context.Context) (*apigateway.CreateApiKeyOutput, error) {
			return u.client.CreateApiKey(ctx, &apigateway.CreateApiKeyInput{Name: &identity, Value: &identity, Enabled: true})
		})
		if cerr == nil {
			return aws.ToString(out.Id), nil
		}
		if !isConflict(cerr) {
			return "", cerr
		}
		// A concurrent Provision may have created it first.
		if key, err = u.ownKey(ctx, identity); err != nil {
			return "", err
		}
		if key == nil {
			return "", fmt.Errorf("%w, and no key named %s has that value", cerr, identity)
		}
	}
	return u.enable(ctx, key)
}

// enable returns key's id after enabling it if it is disabled: a disabled
// key's requests would be refused.
func (u *UsagePlans) enable(ctx context.Context, key *types.ApiKey) (string, error) {
	if !key.Enabled {
		_, err := call(ctx, &u.o, "enable api key", func(ctx context.Context) (*apigateway.UpdateApiKeyOutput, error) {
			return u.client.UpdateApiKey(ctx, &apigateway.UpdateApiKeyInput{
				ApiKey: key.Id,
				PatchOperations: []types.PatchOperation{
					{Op: types.OpReplace, Path: aws.String("/enabled"), Value: aws.String("true")},
				},
			})
		})
		if err != nil {
			return "", err
		}
	}
	return aws.ToString(key.Id), nil
}

// Remove deletes identity's API keys, which takes them out of their usage
// plans too. It is idempotent: a missing key is success.
func (u *UsagePlans) Remove(ctx context.Context, identity string) error {
	if err := u.remove(ctx, identity); err != nil {
		return fmt.Errorf("apigw: remove %s: %w", identity, err)
	}
	return nil
}

func (u *UsagePlans) remove(ctx context.Context, identity string) error {
	if identity == "" {
		return errors.New("empty identity")
	}
	keys, err := u.keysNamed(ctx, identity)
	if err != nil {
		return err
	}
	for _, k := range keys {
		_, err := call(ctx, &u.o, "delete api key", func(ctx context.Context) (*apigateway.DeleteApiKeyOutput, error) {
			return u.client.DeleteApiKey(ctx, &apigateway.DeleteApiKeyInput{ApiKey: k.Id})
		})
		if err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}

// ownKey returns identity's API key: named identity and valued identity,
// or nil. Values are unique per account and region, so there is at most
// one.
func (u *UsagePlans) ownKey(ctx context.Context, identity string) (*types.ApiKey, error) {
	keys, err := u.keysNamed(ctx, identity)
	if err != nil {
		return nil, err
	}
	for i := range keys {
		if aws.ToString(keys[i].Value) == identity {
			return &keys[i], nil
		}
	}
	return nil, nil
}

// keysNamed returns the API keys, with their values, named exactly name:
// names are not unique, and nameQuery also matches longer names.
func (u *UsagePlans) keysNamed(ctx context.Context, name string) ([]types.ApiKey, error) {
	var keys []types.ApiKey
	in := &apigateway.GetApiKeysInput{NameQuery: &name, IncludeValues: aws.Bool(true), Limit: aws.Int32(pageSize)}
	for {
		out, err := call(ctx, &u.o, "get api keys", func(ctx context.Context) (*apigateway.GetApiKeysOutput, error) {
			return u.client.GetApiKeys(ctx, in)
		})
		if err != nil {
			return nil, err
		}
		for _, k := range out.Items {
			if aws.ToString(k.Name) == name {
				keys = append(keys, k)
			}
		}
		if aws.ToString(out.Position) == "" {
			return keys, nil
		}
		in.Position = out.Position
	}
}

// inPlan reports whether the API key keyID, named name, is in usage plan
// plan.
func (u *UsagePlans) inPlan(ctx context.Context, plan, name, keyID string) (bool, error) {
	in := &apigateway.GetUsagePlanKeysInput{UsagePlanId: &plan, NameQuery: &name, Limit: aws.Int32(pageSize)}
	for {
		out, err := call(ctx, &u.o, "get usage plan keys", func(ctx context.Context) (*apigateway.GetUsagePlanKeysOutput, error) {
			return u.client.GetUsagePlanKeys(ctx, in)
		})
		if err != nil {
			return false, err
		}
		for _, k := range out.Items {
			if aws.ToString(k.Id) == keyID {
				return true, nil
			}
		}
		if aws.ToString(out.Position) == "" {
			return false, nil
		}
		in.Position = out.Position
	}
}

func isNotFound(err error) bool {
	_, ok := errors.AsType[*types.NotFoundException](err)
	return ok
}

func isConflict(err error) bool {
	_, ok := errors.AsType[*types.ConflictException](err)
	return ok
}
