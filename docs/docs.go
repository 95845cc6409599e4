// Package docs carries the admin API's OpenAPI document, which the local
// stack serves at /v1/openapi.yaml and renders at /v1/reference.
package docs

import _ "embed"

// OpenAPI is openapi.yaml as shipped.
//
//go:embed openapi.yaml
var OpenAPI []byte
