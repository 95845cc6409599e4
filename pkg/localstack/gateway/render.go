package gateway

import (
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/keyward/keyward/pkg/config"
)

// responseType is what API Gateway itself knows of a gateway response
// type: its default status and $context.error.message.
type responseType struct {
	status  int
	message string
}

// builtinTypes are the response types the gateway or the CDK tests render.
// DEFAULT_4XX and DEFAULT_5XX have no status of their own; 400 and 500
// stand in.
var builtinTypes = map[string]responseType{
	"ACCESS_DENIED":                  {http.StatusForbidden, "User is not authorized to access this resource with an explicit deny"},
	"AUTHORIZER_CONFIGURATION_ERROR": {http.StatusInternalServerError, "Internal server error"},
	"AUTHORIZER_FAILURE":             {http.StatusInternalServerError, "Internal server error"},
	"DEFAULT_4XX":                    {http.StatusBadRequest, "Bad Request"},
	"DEFAULT_5XX":                    {http.StatusInternalServerError, "Internal server error"},
	"INTEGRATION_FAILURE":            {http.StatusGatewayTimeout, "Internal server error"},
	"INTEGRATION_TIMEOUT":            {http.StatusGatewayTimeout, "Endpoint request timed out"},
	"INCOMPLETE_SIGNATURE":           {http.StatusForbidden, "Authorization header requires 'Credential' parameter."},
	"INVALID_SIGNATURE":              {http.StatusForbidden, "The request signature we calculated does not match the signature you provided."},
	"EXPIRED_TOKEN":                  {http.StatusForbidden, "The security token included in the request is expired"},
	"INVALID_API_KEY":                {http.StatusForbidden, "Forbidden"},
	"MISSING_AUTHENTICATION_TOKEN":   {http.StatusForbidden, "Missing Authentication Token"},
	"QUOTA_EXCEEDED":                 {http.StatusTooManyRequests, "Limit Exceeded"},
	"THROTTLED":                      {http.StatusTooManyRequests, "Too Many Requests"},
	"UNAUTHORIZED":                   {http.StatusUnauthorized, "Unauthorized"},
}

// builtin returns a response type's defaults; an unknown type is a 500.
func builtin(name string) responseType {
	if t, ok := builtinTypes[name]; ok {
		return t
	}
	return builtinTypes["DEFAULT_5XX"]
}

// variable is a $context variable in a template. A trailing "." ends a
// sentence, not the name.
var variable = regexp.MustCompile(`\$context(?:\.[A-Za-z0-9_]+)+`)

// Render renders the gateway response of responseType as API Gateway does
// from cfg.GatewayResponses. vars holds $context variables by name without
// the "$" ("context.requestId", "context.authorizer.error_code",
// "context.error.message"); an absent one renders empty. Render derives
// context.error.messageString (the message as a JSON string) and
// context.error.responseType. Values are substituted verbatim, as API
// Gateway does: they must not need JSON escaping.
//
// A type cfg does not define falls back to DEFAULT_4XX or DEFAULT_5XX by
// its default status. The status is the response's own, else the
// fallback's (a status on DEFAULT_4XX applies to every 4XX response
// without one), else API Gateway's default for the type.
func Render(cfg config.Gateway, responseType string, vars map[string]string) (status int, header http.Header, body []byte) {
	status = builtin(responseType).status
	fallback := "DEFAULT_5XX"
	if status < 500 {
		fallback = "DEFAULT_4XX"
	}
	resp, ok := cfg.GatewayResponses[responseType]
	if !ok {
		resp = cfg.GatewayResponses[fallback]
	}
	if s := cfg.GatewayResponses[fallback].Status; s != 0 {
		status = s
	}
	if resp.Status != 0 {
		status = resp.Status
	}
	quoted, _ := json.Marshal(vars["context.error.message"]) // a string always marshals
	text := variable.ReplaceAllStringFunc(resp.Template, func(v string) string {
		switch name := v[1:]; name {
		case "context.error.messageString":
			return string(quoted)
		case "context.error.responseType":
			return responseType
		default:
			return vars[name]
		}
	})
	header = http.Header{"Content-Type": {"application/json"}}
	for k, v := range resp.Headers {
		header.Set(k, v)
	}
	return status, header, []byte(text)
}
