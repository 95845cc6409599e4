// Package openapitest checks the admin API against its OpenAPI document,
// docs/openapi.yaml, so that the document cannot drift from the handler:
// tests that exercise the API pass every response they get to
// CheckResponse.
package openapitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/keyward/keyward/internal/testenv"
)

// Spec is the loaded and validated OpenAPI document.
type Spec struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	loadOnce sync.Once
	loaded   *Spec
	loadErr  error
)

// Load returns the document, loading and validating it once per process.
func Load(t testing.TB) *Spec {
	t.Helper()
	loadOnce.Do(func() { loaded, loadErr = load() })
	if loadErr != nil {
		t.Fatalf("openapitest: %v", loadErr)
	}
	return loaded
}

func load() (*Spec, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(root, "docs", "openapi.yaml")
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	// Response validation uses JSON Schema 2020-12 only for 3.1 documents;
	// the document's nullable types mean nothing without it.
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("%s: openapi %q, want 3.1", path, doc.OpenAPI)
	}
	// Format validation catches a misspelt format, which would otherwise
	// silently validate nothing.
	if err := doc.Validate(context.Background(), openapi3.EnableSchemaFormatValidation()); err != nil {
		return nil, fmt.Errorf("%s is not a valid OpenAPI document: %w", path, err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing %s: %w", path, err)
	}
	return &Spec{doc: doc, router: router}, nil
}

// Operations lists every operation of the document as "METHOD /path",
// sorted.
func (s *Spec) Operations() []string {
	var ops []string
	for path, item := range s.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

// CheckResponse fails t unless the document has the request's operation
// and the response (status, headers, Content-Type and body) is one the
// document allows for it. For a 2xx response the request, with reqBody as
// its body, must also be one the document allows: a request the server
// accepted shows where the document is stricter than the server.
func (s *Spec) CheckResponse(t testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, body []byte) {
	t.Helper()
	if err := s.checkResponse(req, reqBody, status, header, body); err != nil {
		t.Errorf("openapitest: %s %s answered %d, which the OpenAPI document does not allow: %v\nresponse body: %s",
			req.Method, req.URL.RequestURI(), status, err, body)
	}
}

func (s *Spec) checkResponse(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	ctx := context.Background()
	r := req.Clone(ctx)
	// The document's server is "/": route on the path alone, whether the
	// request was built for a client (absolute URL) or received by a server.
	r.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		return fmt.Errorf("no operation %s %s in the document: %w", r.Method, r.URL.Path, err)
	}
	opts := &openapi3filter.Options{
		// Authentication happens in front of the handler; the document
		// describes it but a test cannot check it here.
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	if status/100 == 2 {
		// The handler answers 415 to a body not declared JSON, so an
		// accepted body was JSON even if this copy of the request lacks
		// the header.
		if len(reqBody) > 0 && r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/json")
		}
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return fmt.Errorf("the server accepted a request the document refuses: %w", err)
		}
	}
	res := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: opts}
	return openapi3filter.ValidateResponse(ctx, res.SetBodyBytes(body))
}
