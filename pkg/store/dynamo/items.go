package dynamo

import (
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/pkg/store"
)

// item is one stored DynamoDB item.
type item = map[string]types.AttributeValue

// Attributes that conditions or hand-written updates name; the others appear
// only in the encode and decode functions and the mutable lists below.
const (
	attrTenantID      = "tenant_id"
	attrStatus        = "status"
	attrRevision      = "revision"
	attrKeyCount      = "key_count"
	attrHash          = "hash"
	attrPepperVersion = "pepper_version"
	attrLastUsedAt    = "last_used_at"
	attrExpiresAt     = "expires_at"
	attrRequestHash   = "request_hash"
	attrDone          = "done"
	attrStatusCode    = "status_code"
	attrBody          = "body"
	attrNotices       = "notices"
	attrRetiredAt     = "retired_at"
	attrCursor        = "cursor"
	attrKeyID         = "key_id"
	attrCreatedAt     = "created_at"
	attrEnvironment   = "environment"
	attrKeyDisplay    = "key_display"
	attrBrowserWrites = "allow_browser_writes"
)

// keyMutable and tenantMutable are what an update through Apply may change;
// the rest of the item is fixed at creation or managed by the store.
var (
	keyMutable = []string{
		"name", "description", "scopes", attrStatus, "updated_at", "not_before",
		attrExpiresAt, "revoked_at", "allowed_ips", "allowed_origins", attrBrowserWrites, "contact",
		"rate_limit_rpm", "rate_limit_burst", "replaced_by", "metadata",
		attrNotices,
	}
	tenantMutable = []string{"name", "contact", attrStatus, "created_at", "offboarded_at"}
)

// keyExpiryIndex is what keyItem derives from a key's status and expiry:
// an update sets or removes it along with them.
var keyExpiryIndex = []string{AttrGSI2PK, AttrGSI2SK}

// expiryDue reports whether k belongs in the expiry index: it is active or
// expiring and has an expiry.
func expiryDue(k store.Key) bool {
	return (k.Status == store.KeyActive || k.Status == store.KeyExpiring) && !k.ExpiresAt.IsZero()
}

// ttl is the epoch second DynamoDB may delete an item after, rounded up so
// that it never deletes one before it has expired.
func ttl(t time.Time) types.AttributeValue {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return num(sec)
}

// encoder writes attributes, leaving out empty strings, zero times and nil
// slices, maps and byte slices, so that an update can REMOVE what is absent.
// Numbers are always written. Empty but non-nil slices and maps are kept so
// that they read back as they were written.
type encoder item

func (e encoder) str(name, v string) {
	if v != "" {
		e[name] = str(v)
	}
}

func (e encoder) time(name string, t time.Time) {
	if !t.IsZero() {
		e[name] = str(store.SortTime(t))
	}
}

func (e encoder) int(name string, v int64) { e[name] = num(v) }

func (e encoder) bool(name string, v bool) { e[name] = &types.AttributeValueMemberBOOL{Value: v} }

func (e encoder) bytes(name string, v []byte) {
	if v != nil {
		e[name] = &types.AttributeValueMemberB{Value: v}
	}
}

func (e encoder) list(name string, v []string) {
	if v == nil {
		return
	}
	l := make([]types.AttributeValue, len(v))
	for i, s := range v {
		l[i] = str(s)
	}
	e[name] = &types.AttributeValueMemberL{Value: l}
}

func (e encoder) strMap(name string, v map[string]string) {
	if v == nil {
		return
	}
	m := make(map[string]types.AttributeValue, len(v))
	for k, s := range v {
		m[k] = str(s)
	}
	e[name] = &types.AttributeValueMemberM{Value: m}
}

// decoder reads what encoder wrote, remembering the first malformed
// attribute; every value it returns is freshly allocated.
type decoder struct {
	it  item
	err error
}

func (d *decoder) fail(name string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("malformed attribute %s: %w", name, err)
	}
}

func attr[T types.AttributeValue](d *decoder, name string) (T, bool) {
	var zero T
	av, ok := d.it[name]
	if !ok {
		return zero, false
	}
	v, ok := av.(T)
	if !ok {
		d.fail(name, fmt.Errorf("unexpected type %T", av))
		return zero, false
	}
	return v, true
}

func (d *decoder) str(name string) string {
	v, ok := attr[*types.AttributeValueMemberS](d, name)
	if !ok {
		return ""
	}
	return v.Value
}

func (d *decoder) time(name string) time.Time {
	s := d.str(name)
	if s == "" {
		return time.Time{}
	}
	// SortTime's layout is a fixed-width case of RFC 3339; parsing its "Z"
	// yields UTC.
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d.fail(name, err)
	}
	return t
}

func (d *decoder) int(name string) int64 {
	v, ok := attr[*types.AttributeValueMemberN](d, name)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		d.fail(name, err)
	}
	return n
}

func (d *decoder) bool(name string) bool {
	v, ok := attr[*types.AttributeValueMemberBOOL](d, name)
	return ok && v.Value
}

func (d *decoder) bytes(name string) []byte {
	v, ok := attr[*types.AttributeValueMemberB](d, name)
	if !ok {
		return nil
	}
	return append(make([]byte, 0, len(v.Value)), v.Value...)
}

func (d *decoder) list(name string) []string {
	v, ok := attr[*types.AttributeValueMemberL](d, name)
	if !ok {
		return nil
	}
	l := make([]string, len(v.Value))
	for i, av := range v.Value {
		s, ok := av.(*types.AttributeValueMemberS)
		if !ok {
			d.fail(name, fmt.Errorf("element %d has type %T", i, av))
			return nil
		}
		l[i] = s.Value
	}
	return l
}

func (d *decoder) strMap(name string) map[string]string {
	v, ok := attr[*types.AttributeValueMemberM](d, name)
	if !ok {
		return nil
	}
	m := make(map[string]string, len(v.Value))
	for k, av := range v.Value {
		s, ok := av.(*types.AttributeValueMemberS)
		if !ok {
			d.fail(name, fmt.Errorf("entry %q has type %T", k, av))
			return nil
		}
		m[k] = s.Value
	}
	return m
}

func keyItem(k store.Key) item {
	e := encoder(primaryKey(keyPK(k.ID), keySK))
	shard := shardOf(k.ID, PartitionShards)
	e[AttrGSI1PK] = str(tenantKeysPK(k.TenantID, shard))
	e[AttrGSI1SK] = str(store.KeyOrder(k))
	if expiryDue(k) {
		e[AttrGSI2PK] = str(expiryPK(shard))
		e[AttrGSI2SK] = str(store.ExpiryOrder(k))
	}
	if k.CreatedBy != "" {
		e[AttrGSI3PK] = str(memberKeysPK(k.TenantID, k.CreatedBy, shard))
		e[AttrGSI3SK] = str(store.KeyOrder(k))
	}
	e.str("id", k.ID)
	e.str(attrTenantID, k.TenantID)
	e.str("name", k.Name)
	e.str("description", k.Description)
	e.str("prefix", k.Prefix)
	e.str("environment", k.Environment)
	e.str("last4", k.Last4)
	e.list("scopes", k.Scopes)
	e.str(attrStatus, string(k.Status))
	e.bytes(attrHash, k.Hash)
	e.int(attrPepperVersion, int64(k.PepperVersion))
	e.time("created_at", k.CreatedAt)
	e.str("created_by", k.CreatedBy)
	e.time("updated_at", k.UpdatedAt)
	e.time("not_before", k.NotBefore)
	e.time(attrExpiresAt, k.ExpiresAt)
	e.time("revoked_at", k.RevokedAt)
	e.time(attrLastUsedAt, k.LastUsedAt)
	e.list("allowed_ips", k.AllowedIPs)
	e.list("allowed_origins", k.AllowedOrigins)
	if k.AllowBrowserWrites { // absent when false, as on every key before it existed
		e.bool(attrBrowserWrites, true)
	}
	e.str("contact", k.Contact)
	e.int("rate_limit_rpm", int64(k.RateLimit.RequestsPerMinute))
	e.int("rate_limit_burst", int64(k.RateLimit.Burst))
	e.str("replaces", k.Replaces)
	e.str("replaced_by", k.ReplacedBy)
	e.strMap("metadata", k.Metadata)
	if len(k.Notices) > 0 {
		e.list(attrNotices, k.Notices)
	}
	e.int(attrRevision, k.Revision)
	return item(e)
}

func decodeKey(it item) (store.Key, error) {
	d := decoder{it: it}
	k := store.Key{
		ID:                 d.str("id"),
		TenantID:           d.str(attrTenantID),
		Name:               d.str("name"),
		Description:        d.str("description"),
		Prefix:             d.str("prefix"),
		Environment:        d.str("environment"),
		Last4:              d.str("last4"),
		Scopes:             d.list("scopes"),
		Status:             store.KeyStatus(d.str(attrStatus)),
		Hash:               d.bytes(attrHash),
		PepperVersion:      int(d.int(attrPepperVersion)),
		CreatedAt:          d.time("created_at"),
		CreatedBy:          d.str("created_by"),
		UpdatedAt:          d.time("updated_at"),
		NotBefore:          d.time("not_before"),
		ExpiresAt:          d.time(attrExpiresAt),
		RevokedAt:          d.time("revoked_at"),
		LastUsedAt:         d.time(attrLastUsedAt),
		AllowedIPs:         d.list("allowed_ips"),
		AllowedOrigins:     d.list("allowed_origins"),
		AllowBrowserWrites: d.bool(attrBrowserWrites),
		Contact:            d.str("contact"),
		RateLimit: store.RateLimit{
			RequestsPerMinute: int(d.int("rate_limit_rpm")),
			Burst:             int(d.int("rate_limit_burst")),
		},
		Replaces:   d.str("replaces"),
		ReplacedBy: d.str("replaced_by"),
		Metadata:   d.strMap("metadata"),
		Notices:    d.list(attrNotices),
		Revision:   d.int(attrRevision),
	}
	if d.err != nil {
		return k, fmt.Errorf("%w: key %s: %v", store.ErrCorrupt, k.ID, d.err)
	}
	return k, store.CheckKey(k)
}

func tenantItem(t store.Tenant) item {
	e := encoder(primaryKey(tenantPK(t.ID), tenantSK))
	e.str("id", t.ID)
	e.str("name", t.Name)
	e.str("contact", t.Contact)
	e.str(attrStatus, string(t.Status))
	e.time("created_at", t.CreatedAt)
	e.time("offboarded_at", t.OffboardedAt)
	e.int(attrRevision, t.Revision)
	return item(e)
}

func decodeTenant(it item) (store.Tenant, error) {
	d := decoder{it: it}
	t := store.Tenant{
		ID:           d.str("id"),
		Name:         d.str("name"),
		Contact:      d.str("contact"),
		Status:       store.TenantStatus(d.str(attrStatus)),
		CreatedAt:    d.time("created_at"),
		OffboardedAt: d.time("offboarded_at"),
		Revision:     d.int(attrRevision),
	}
	return t, d.err
}

func pepperItem(p store.Pepper) item {
	e := encoder(primaryKey(pepperPK, pepperSK(p.Version)))
	e.int("version", int64(p.Version))
	e.bytes("ciphertext", p.Ciphertext)
	e.str("key_id", p.KeyID)
	e.time("created_at", p.CreatedAt)
	e.time(attrRetiredAt, p.RetiredAt)
	return item(e)
}

func decodePepper(it item) (store.Pepper, error) {
	d := decoder{it: it}
	p := store.Pepper{
		Version:    int(d.int("version")),
		Ciphertext: d.bytes("ciphertext"),
		KeyID:      d.str("key_id"),
		CreatedAt:  d.time("created_at"),
		RetiredAt:  d.time(attrRetiredAt),
	}
	return p, d.err
}

func auditItem(a store.AuditEntry) item {
	order := store.AuditOrder(a)
	e := encoder(primaryKey(auditPK(a.TenantID, shardOf(a.ID, PartitionShards)), order))
	if a.KeyID != "" {
		e[AttrGSI1PK] = str(auditKeyPK(a.TenantID, a.KeyID))
		e[AttrGSI1SK] = str(order)
	}
	e.str(attrTenantID, a.TenantID)
	e.str("id", a.ID)
	e.time("time", a.Time)
	e.str("actor", a.Actor)
	e.str("action", a.Action)
	e.str(attrKeyID, a.KeyID)
	e.str(attrEnvironment, a.Environment)
	e.str(attrKeyDisplay, a.KeyDisplay)
	e.str("request_id", a.RequestID)
	e.strMap("details", a.Details)
	e.time(attrExpiresAt, a.ExpiresAt)
	if !a.ExpiresAt.IsZero() {
		e[AttrTTL] = ttl(a.ExpiresAt)
	}
	return item(e)
}

func decodeAudit(it item) (store.AuditEntry, error) {
	d := decoder{it: it}
	a := store.AuditEntry{
		TenantID:    d.str(attrTenantID),
		ID:          d.str("id"),
		Time:        d.time("time"),
		Actor:       d.str("actor"),
		Action:      d.str("action"),
		KeyID:       d.str(attrKeyID),
		Environment: d.str(attrEnvironment),
		KeyDisplay:  d.str(attrKeyDisplay),
		RequestID:   d.str("request_id"),
		Details:     d.strMap("details"),
		ExpiresAt:   d.time(attrExpiresAt),
	}
	return a, d.err
}

func idemItem(r store.Idempotency) item {
	e := encoder(primaryKey(idemPK(r.TenantID, r.Key), idemSK))
	e.str(attrTenantID, r.TenantID)
	e.str("key", r.Key)
	e.str(attrRequestHash, r.RequestHash)
	e.bool(attrDone, r.Done)
	e.int(attrStatusCode, int64(r.StatusCode))
	e.bytes(attrBody, r.Body)
	e.time(attrCreatedAt, r.CreatedAt)
	e.time(attrExpiresAt, r.ExpiresAt)
	if !r.ExpiresAt.IsZero() {
		e[AttrTTL] = ttl(r.ExpiresAt)
	}
	return item(e)
}

func decodeIdem(it item) (store.Idempotency, error) {
	d := decoder{it: it}
	r := store.Idempotency{
		TenantID:    d.str(attrTenantID),
		Key:         d.str("key"),
		RequestHash: d.str(attrRequestHash),
		Done:        d.bool(attrDone),
		StatusCode:  int(d.int(attrStatusCode)),
		Body:        d.bytes(attrBody),
		CreatedAt:   d.time("created_at"),
		ExpiresAt:   d.time(attrExpiresAt),
	}
	return r, d.err
}
