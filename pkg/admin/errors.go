package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/keyward/keyward/pkg/lifecycle"
)

// apiError is the one error envelope of the admin API:
// {"error":{"type":...,"code":...,"message":...,"param":...}}.
type apiError struct {
	Status  int    `json:"-"`
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func invalidRequest(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request", Code: "invalid_request",
		Message: fmt.Sprintf(format, args...), Param: param}
}

func forbidden(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: "forbidden", Code: "insufficient_scope", Message: fmt.Sprintf(format, args...)}
}

var (
	errUnauthorized = &apiError{Status: http.StatusUnauthorized, Type: "unauthorized", Message: "Invalid or missing API key."}
	errNotOperator  = &apiError{Status: http.StatusUnauthorized, Type: "unauthorized",
		Message: "This route is for the platform's operators: sign it with AWS SigV4 (or, locally, send the operator token)."}
	errNotFound = &apiError{Status: http.StatusNotFound, Type: "not_found", Code: "not_found", Message: "No such resource."}
	errTooLarge = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request", Code: "body_too_large",
		Message: fmt.Sprintf("The request body is larger than %d KiB.", maxBody>>10)}
	errNotJSON = &apiError{Status: http.StatusUnsupportedMediaType, Type: "invalid_request", Code: "unsupported_media_type",
		Message: "The request body must be JSON, sent with Content-Type: application/json."}
	errInternal = &apiError{Status: http.StatusInternalServerError, Type: "api_error", Message: "Internal error; retry later."}
)

// fromDomain maps a lifecycle error to the envelope; anything unknown is
// an internal error whose cause is logged, never returned.
func fromDomain(err error) *apiError {
	var ve *lifecycle.ValidationError
	var ae *apiError
	var ce *lifecycle.ConflictError
	var re *lifecycle.RestrictionError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &re) && re.Field == "environment":
		return &apiError{Status: http.StatusForbidden, Type: "forbidden", Code: "environment_mismatch",
			Message: sentence(re.Message), Param: re.Field}
	case errors.As(err, &re):
		return &apiError{Status: http.StatusForbidden, Type: "forbidden", Code: "exceeds_caller_restrictions",
			Message: sentence(re.Message), Param: re.Field}
	case errors.As(err, &ve):
		return invalidRequest(ve.Field, "%s %s.", ve.Field, ve.Message)
	case errors.Is(err, lifecycle.ErrNotFound):
		return errNotFound
	case errors.Is(err, lifecycle.ErrTenantInactive):
		return &apiError{Status: http.StatusConflict, Type: "conflict", Code: "tenant_inactive", Message: "The tenant does not exist or has been offboarded."}
	case errors.As(err, &ce):
		return &apiError{Status: http.StatusConflict, Type: "conflict", Code: "conflict", Message: sentence(ce.Reason)}
	}
	return nil
}

func sentence(s string) string { return strings.ToUpper(s[:1]) + s[1:] + "." }

// environmentMismatch refuses a management key's request about the other
// environment's keys: test never touches live.
func environmentMismatch(c Caller) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: "forbidden", Code: "environment_mismatch", Param: "environment",
		Message: fmt.Sprintf("A %s key manages %s keys only.", c.Environment, c.Environment)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":{"type":"api_error","message":"Internal error; retry later."}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, map[string]*apiError{"error": e})
}

// maxBody bounds request bodies; key settings are small.
const maxBody = 64 << 10

// readBody reads a request body of at most maxBody bytes. A body that is
// present must be declared JSON.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, e := readLimited(w, r, maxBody, errTooLarge)
	if e != nil {
		return nil, e
	}
	if len(body) > 0 {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return nil, errNotJSON
		}
	}
	return body, nil
}

// readLimited reads a request body of at most limit bytes, whatever its
// type; a larger one gets tooLarge.
func readLimited(w http.ResponseWriter, r *http.Request, limit int64, tooLarge *apiError) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var overLimit *http.MaxBytesError
	if errors.As(err, &overLimit) {
		return nil, tooLarge
	}
	if err != nil {
		return nil, invalidRequest("", "The request body could not be read.")
	}
	return body, nil
}

// decode parses a JSON object strictly: unknown fields, trailing data and
// wrong types are refused, naming the field.
func decode(body []byte, v any) *apiError {
	if len(body) == 0 {
		return invalidRequest("", "A JSON request body is required.")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		return invalidRequest("", "The request body has data after its JSON object.")
	}
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return invalidRequest("", "The request body must be a JSON object.")
	case errors.As(err, &typeErr):
		return invalidRequest(typeErr.Field, "%s must be %s.", typeErr.Field, typeName(typeErr.Type.Kind().String()))
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return invalidRequest("", "The request body is not valid JSON.")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalidRequest(field, "Unknown field %q.", field)
	}
	return invalidRequest("", "The request body is not a valid JSON object: %v.", err)
}

func typeName(kind string) string {
	switch kind {
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	case "int", "int64":
		return "an integer"
	case "float64":
		return "a number"
	case "bool":
		return "a boolean"
	}
	return "a " + kind
}
