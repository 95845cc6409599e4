package apigw

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/apigateway/types"
)

// apiCall is one recorded call to fakeAPI with the inputs that matter.
type apiCall struct {
	Op                    string
	KeyName, KeyValue     string // CreateApiKey; KeyName is the nameQuery of the Get calls
	KeyID, PlanID         string
	KeyType               string
	RestAPIID, Stage      string
	Throttled             bool
	At                    time.Time // fakeAPI.now at the call, if set
	Position              string
	IncludeValues, Enable bool
}

// fakeAPI keeps API keys and usage plan associations in memory and answers
// as API Gateway does: unique key values, NotFound and Conflict errors,
// nameQuery matching name prefixes, small pages.
type fakeAPI struct {
	mu        sync.Mutex
	calls     []apiCall
	keys      []*types.ApiKey            // in creation order
	plans     map[string]map[string]bool // usage plan id → API key ids
	nextID    int
	pageSize  int
	throttled map[string]int // op → how many more calls to throttle
	// throttleErr is returned by a throttled call.
	throttleErr error
	// before runs, without the lock, before each call is handled:
	// tests use it to interleave concurrent changes.
	before func(op string)

	now          func() time.Time
	flushErr     error
	flushGate    chan struct{} // when set, the first flush blocks until it is closed
	flushEntered chan struct{} // receives once per flush started
}

func newFakeAPI(planIDs ...string) *fakeAPI {
	f := &fakeAPI{
		plans:       map[string]map[string]bool{},
		pageSize:    2,
		throttled:   map[string]int{},
		throttleErr: &types.TooManyRequestsException{Message: aws.String("Too Many Requests")},
	}
	for _, id := range planIDs {
		f.plans[id] = map[string]bool{}
	}
	return f
}

// throttle makes the next n calls of op fail with throttleErr.
func (f *fakeAPI) throttle(op string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttled[op] = n
}

// record logs c and says whether the call fails before doing anything:
// an ended context, as the SDK's, or injected throttling.
func (f *fakeAPI) record(ctx context.Context, c apiCall) error {
	if f.before != nil {
		f.before(c.Op)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.now != nil {
		c.At = f.now()
	}
	var err error
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case f.throttled[c.Op] > 0:
		f.throttled[c.Op]--
		c.Throttled = true
		err = f.throttleErr
	}
	f.calls = append(f.calls, c)
	return err
}

func (f *fakeAPI) recorded() []apiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]apiCall(nil), f.calls...)
}

// writes returns the recorded calls other than reads.
func (f *fakeAPI) writes() []apiCall {
	var w []apiCall
	for _, c := range f.recorded() {
		if !strings.HasPrefix(c.Op, "Get") {
			w = append(w, c)
		}
	}
	return w
}

// addKey stores a key directly, as another process would.
func (f *fakeAPI) addKey(name, value string, enabled bool) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addKeyLocked(name, value, enabled)
}

func (f *fakeAPI) addKeyLocked(name, value string, enabled bool) string {
	f.nextID++
	id := "key" + strconv.Itoa(f.nextID)
	f.keys = append(f.keys, &types.ApiKey{Id: aws.String(id), Name: aws.String(name), Value: aws.String(value), Enabled: enabled})
	return id
}

// associate puts a key in a plan directly, as another process would.
func (f *fakeAPI) associate(plan, keyID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plans[plan][keyID] = true
}

// state returns the keys named name, and for each its plans, sorted.
func (f *fakeAPI) state(name string) (keys []types.ApiKey, plans map[string][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	plans = map[string][]string{}
	for _, k := range f.keys {
		if *k.Name != name {
			continue
		}
		keys = append(keys, *k)
		for _, p := range slices.Sorted(maps.Keys(f.plans)) {
			if f.plans[p][*k.Id] {
				plans[*k.Id] = append(plans[*k.Id], p)
			}
		}
	}
	return keys, plans
}

func (f *fakeAPI) keyByID(id string) (int, *types.ApiKey) {
	for i, k := range f.keys {
		if *k.Id == id {
			return i, k
		}
	}
	return -1, nil
}

func notFound(what string) error {
	return &types.NotFoundException{Message: aws.String("Invalid " + what + " identifier specified")}
}

// page returns the items from position on, and the next position.
func page[T any](items []T, position *string, size int) ([]T, *string) {
	start, _ := strconv.Atoi(aws.ToString(position))
	if start > len(items) {
		start = len(items)
	}
	end := min(start+size, len(items))
	if end == len(items) {
		return items[start:], nil
	}
	return items[start:end], aws.String(strconv.Itoa(end))
}

func (f *fakeAPI) GetApiKeys(ctx context.Context, in *apigateway.GetApiKeysInput, _ ...func(*apigateway.Options)) (*apigateway.GetApiKeysOutput, error) {
	if err := f.record(ctx, apiCall{Op: "GetApiKeys", KeyName: aws.ToString(in.NameQuery), Position: aws.ToString(in.Position), IncludeValues: aws.ToBool(in.IncludeValues)}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var match []types.ApiKey
	for _, k := range f.keys {
		if strings.HasPrefix(*k.Name, aws.ToString(in.NameQuery)) {
			c := *k
			if !aws.ToBool(in.IncludeValues) {
				c.Value = nil
			}
			match = append(match, c)
		}
	}
	items, next := page(match, in.Position, min(f.pageSize, int(aws.ToInt32(in.Limit))))
	return &apigateway.GetApiKeysOutput{Items: items, Position: next}, nil
}

func (f *fakeAPI) CreateApiKey(ctx context.Context, in *apigateway.CreateApiKeyInput, _ ...func(*apigateway.Options)) (*apigateway.CreateApiKeyOutput, error) {
	if err := f.record(ctx, apiCall{Op: "CreateApiKey", KeyName: aws.ToString(in.Name), KeyValue: aws.ToString(in.Value), Enable: in.Enabled}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys {
		if *k.Value == aws.ToString(in.Value) {
			return nil, &types.ConflictException{Message: aws.String("API Key already exists")}
		}
	}
	id := f.addKeyLocked(aws.ToString(in.Name), aws.ToString(in.Value), in.Enabled)
	return &apigateway.CreateApiKeyOutput{Id: aws.String(id), Name: in.Name, Value: in.Value, Enabled: in.Enabled}, nil
}

func (f *fakeAPI) UpdateApiKey(ctx context.Context, in *apigateway.UpdateApiKeyInput, _ ...func(*apigateway.Options)) (*apigateway.UpdateApiKeyOutput, error) {
	c := apiCall{Op: "UpdateApiKey", KeyID: aws.ToString(in.ApiKey)}
	for _, p := range in.PatchOperations {
		if p.Op == types.OpReplace && aws.ToString(p.Path) == "/enabled" {
			c.Enable = aws.ToString(p.Value) == "true"
		} else {
			return nil, &types.BadRequestException{Message: aws.String("unsupported patch")}
		}
	}
	if err := f.record(ctx, c); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, k := f.keyByID(c.KeyID)
	if k == nil {
		return nil, notFound("API Key")
	}
	k.Enabled = c.Enable
	return &apigateway.UpdateApiKeyOutput{Id: k.Id, Enabled: k.Enabled}, nil
}

func (f *fakeAPI) DeleteApiKey(ctx context.Context, in *apigateway.DeleteApiKeyInput, _ ...func(*apigateway.Options)) (*apigateway.DeleteApiKeyOutput, error) {
	if err := f.record(ctx, apiCall{Op: "DeleteApiKey", KeyID: aws.ToString(in.ApiKey)}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i, _ := f.keyByID(aws.ToString(in.ApiKey))
	if i < 0 {
		return nil, notFound("API Key")
	}
	f.keys = append(f.keys[:i], f.keys[i+1:]...)
	for _, members := range f.plans {
		delete(members, aws.ToString(in.ApiKey))
	}
	return &apigateway.DeleteApiKeyOutput{}, nil
}

func (f *fakeAPI) GetUsagePlanKeys(ctx context.Context, in *apigateway.GetUsagePlanKeysInput, _ ...func(*apigateway.Options)) (*apigateway.GetUsagePlanKeysOutput, error) {
	if err := f.record(ctx, apiCall{Op: "GetUsagePlanKeys", PlanID: aws.ToString(in.UsagePlanId), KeyName: aws.ToString(in.NameQuery), Position: aws.ToString(in.Position)}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	members, ok := f.plans[aws.ToString(in.UsagePlanId)]
	if !ok {
		return nil, notFound("Usage Plan")
	}
	var match []types.UsagePlanKey
	for _, k := range f.keys {
		if members[*k.Id] && strings.HasPrefix(*k.Name, aws.ToString(in.NameQuery)) {
			match = append(match, types.UsagePlanKey{Id: k.Id, Name: k.Name, Type: aws.String("API_KEY")})
		}
	}
	items, next := page(match, in.Position, min(f.pageSize, int(aws.ToInt32(in.Limit))))
	return &apigateway.GetUsagePlanKeysOutput{Items: items, Position: next}, nil
}

func (f *fakeAPI) CreateUsagePlanKey(ctx context.Context, in *apigateway.CreateUsagePlanKeyInput, _ ...func(*apigateway.Options)) (*apigateway.CreateUsagePlanKeyOutput, error) {
	c := apiCall{Op: "CreateUsagePlanKey", PlanID: aws.ToString(in.UsagePlanId), KeyID: aws.ToString(in.KeyId), KeyType: aws.ToString(in.KeyType)}
	if err := f.record(ctx, c); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.KeyType != "API_KEY" {
		return nil, &types.BadRequestException{Message: aws.String("Invalid key type")}
	}
	members, ok := f.plans[c.PlanID]
	if !ok {
		return nil, notFound("Usage Plan")
	}
	if _, k := f.keyByID(c.KeyID); k == nil {
		return nil, notFound("API Key")
	}
	// Every plan here covers the same stage, and API Gateway refuses a key
	// in two plans of one stage.
	for _, m := range f.plans {
		if m[c.KeyID] {
			return nil, &types.ConflictException{Message: aws.String("Usage Plan Key already exists or the key is in another plan of the stage")}
		}
	}
	members[c.KeyID] = true
	return &apigateway.CreateUsagePlanKeyOutput{Id: in.KeyId, Type: in.KeyType}, nil
}

func (f *fakeAPI) DeleteUsagePlanKey(ctx context.Context, in *apigateway.DeleteUsagePlanKeyInput, _ ...func(*apigateway.Options)) (*apigateway.DeleteUsagePlanKeyOutput, error) {
	c := apiCall{Op: "DeleteUsagePlanKey", PlanID: aws.ToString(in.UsagePlanId), KeyID: aws.ToString(in.KeyId)}
	if err := f.record(ctx, c); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.plans[c.PlanID][c.KeyID] {
		return nil, notFound("Usage Plan Key")
	}
	delete(f.plans[c.PlanID], c.KeyID)
	return &apigateway.DeleteUsagePlanKeyOutput{}, nil
}

func (f *fakeAPI) FlushStageAuthorizersCache(ctx context.Context, in *apigateway.FlushStageAuthorizersCacheInput, _ ...func(*apigateway.Options)) (*apigateway.FlushStageAuthorizersCacheOutput, error) {
	if err := f.record(ctx, apiCall{Op: "FlushStageAuthorizersCache", RestAPIID: aws.ToString(in.RestApiId), Stage: aws.ToString(in.StageName)}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	gate, entered, err := f.flushGate, f.flushEntered, f.flushErr
	f.flushGate = nil
	f.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if err != nil {
		return nil, err
	}
	return &apigateway.FlushStageAuthorizersCacheOutput{}, nil
}
