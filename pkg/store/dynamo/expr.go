package dynamo

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// expr collects the placeholders of one expression set. Every attribute is
// named through a placeholder, as many of ours are reserved words.
type expr struct {
	names  map[string]string
	values map[string]types.AttributeValue
}

// clone copies the placeholders, for expressions that build on them.
func (x expr) clone() expr {
	return expr{names: maps.Clone(x.names), values: maps.Clone(x.values)}
}

func (x *expr) name(attr string) string {
	if x.names == nil {
		x.names = make(map[string]string)
	}
	ph := "#" + attr
	x.names[ph] = attr
	return ph
}

func (x *expr) value(v types.AttributeValue) string {
	if x.values == nil {
		x.values = make(map[string]types.AttributeValue)
	}
	ph := ":v" + strconv.Itoa(len(x.values))
	x.values[ph] = v
	return ph
}

func (x *expr) exists(attr string) string    { return "attribute_exists(" + x.name(attr) + ")" }
func (x *expr) notExists(attr string) string { return "attribute_not_exists(" + x.name(attr) + ")" }

// cmp writes "attr op value".
func (x *expr) cmp(attr, op string, v types.AttributeValue) string {
	return x.name(attr) + " " + op + " " + x.value(v)
}

// update builds an UpdateExpression alongside its condition's placeholders.
type update struct {
	expr
	set, remove, add []string
}

func (u *update) setAttr(attr string, v types.AttributeValue) {
	u.set = append(u.set, u.cmp(attr, "=", v))
}

func (u *update) addAttr(attr string, v types.AttributeValue) {
	u.add = append(u.add, u.name(attr)+" "+u.value(v))
}

// copyFrom sets each of attrs that it holds and removes the others, so
// the stored item matches it on exactly those attributes.
func (u *update) copyFrom(it item, attrs []string) {
	for _, a := range attrs {
		if v, ok := it[a]; ok {
			u.setAttr(a, v)
		} else {
			u.remove = append(u.remove, u.name(a))
		}
	}
}

func (u *update) String() string {
	var b strings.Builder
	for _, clause := range []struct {
		verb  string
		parts []string
	}{{"SET", u.set}, {"REMOVE", u.remove}, {"ADD", u.add}} {
		if len(clause.parts) > 0 {
			fmt.Fprintf(&b, "%s %s ", clause.verb, strings.Join(clause.parts, ", "))
		}
	}
	return strings.TrimSpace(b.String())
}
