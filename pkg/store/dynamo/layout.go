package dynamo

import (
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Table layout, shared with the infrastructure that creates the table.
const (
	AttrPK     = "pk"     // partition key (S)
	AttrSK     = "sk"     // sort key (S)
	IndexGSI1  = "gsi1"   // a tenant's keys; one key's audit entries
	AttrGSI1PK = "gsi1pk" // gsi1 partition key (S)
	AttrGSI1SK = "gsi1sk" // gsi1 sort key (S)
	IndexGSI2  = "gsi2"   // keys due to expire (sparse)
	AttrGSI2PK = "gsi2pk" // gsi2 partition key (S)
	AttrGSI2SK = "gsi2sk" // gsi2 sort key (S)
	IndexGSI3  = "gsi3"   // a member's keys (sparse)
	AttrGSI3PK = "gsi3pk" // gsi3 partition key (S)
	AttrGSI3SK = "gsi3sk" // gsi3 sort key (S)
	AttrTTL    = "ttl"    // TTL attribute (N, epoch seconds)
)

// Index is one global secondary index of the table.
type Index struct {
	Name, PK, SK string
}

// Indexes are the table's global secondary indexes. Each projects its keys
// only (KEYS_ONLY): a write that changes no index key attribute, such as
// the authorizer's last_used_at (one per active key every five minutes),
// writes no index, and nothing is ever decided on an index's copy of an
// item, which lags the table: listings read the items themselves, strongly
// consistent, by the primary keys the index gives.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Projections
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations.Writes
var Indexes = []Index{
	{IndexGSI1, AttrGSI1PK, AttrGSI1SK},
	{IndexGSI2, AttrGSI2PK, AttrGSI2SK},
	{IndexGSI3, AttrGSI3PK, AttrGSI3SK},
}

// PartitionShards is how many partition keys each growing, time-ordered
// collection is spread over: a tenant's audit entries (the table), a
// tenant's keys (gsi1), the keys due to expire (gsi2) and a member's keys
// (gsi3). Their sort keys grow with time, so all writes to one partition
// key land on one partition, which takes at most 1,000 write units a
// second however DynamoDB splits it; a transactional write costs two per
// KB. Spread over 16, a bulk import of 1,000 keys a second into one tenant
// writes about 125 units a second to each (docs/scale.md). Listings merge
// the shards in order.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html
const PartitionShards = 16

// shardOf places an id (a key's or an audit entry's, both random) in one
// of n shards, the same one every time.
func shardOf(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

func shardSuffix(shard int) string { return fmt.Sprintf("#%02d", shard) }

func keyPK(id string) string    { return "KEY#" + id }
func tenantPK(id string) string { return "TENANT#" + id }
func idemPK(tenant, key string) string {
	return "IDEM#" + tenant + "#" + key
}
func jobPK(job string) string { return "JOB#" + job }

// tenantKeysPK is the gsi1 partition of a tenant's keys in one shard.
func tenantKeysPK(tenant string, shard int) string {
	return "TENANT#" + tenant + "#KEYS" + shardSuffix(shard)
}

// memberKeysPK is the gsi3 partition of a member's keys in one shard.
func memberKeysPK(tenant, member string, shard int) string {
	return "MEMBER#" + tenant + "#" + member + "#KEYS" + shardSuffix(shard)
}

// expiryPK is one gsi2 partition of the keys due to expire.
func expiryPK(shard int) string { return "EXPIRY" + shardSuffix(shard) }

// auditPK is the table partition of a tenant's audit entries in one shard.
func auditPK(tenant string, shard int) string {
	return AuditPartitionPrefix + tenant + shardSuffix(shard)
}

// auditKeyPK is the gsi1 partition of one key's audit entries: a key's
// entries are few, so one partition.
func auditKeyPK(tenant, key string) string { return "AUDITKEY#" + tenant + "#" + key }

// tenantCounterPK is one of a tenant's key counter items.
func tenantCounterPK(tenant string, shard int) string {
	return "TENANT#" + tenant + "#COUNT" + shardSuffix(shard)
}

// memberCounterPK is one of a member's key counter items.
func memberCounterPK(tenant, member string, shard int) string {
	return "MEMBER#" + tenant + "#" + member + "#COUNT" + shardSuffix(shard)
}

// shards is pk in each of n shards.
func shards(n int, pk func(shard int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = pk(i)
	}
	return out
}

const (
	pepperPK  = "PEPPER"
	keySK     = "KEY"
	tenantSK  = "TENANT"
	counterSK = "COUNT"
	idemSK    = "IDEM"
	// checkpointSK is the sort key of a job's checkpoint.
	checkpointSK = "CHECKPOINT"
)

func pepperSK(version int) string { return "V#" + fmt.Sprintf("%010d", version) }

func primaryKey(pk, sk string) item {
	return item{AttrPK: str(pk), AttrSK: str(sk)}
}

func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func num(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
