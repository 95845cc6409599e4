package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/keyward/keyward/docs"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/store"
)

// The front door's paths: a landing page, the admin API's OpenAPI
// document and its rendered reference, and the stack's health. Only the
// local stack serves them; a route of the protected API at one of them
// wins.
const (
	landingPath   = "/"
	openAPIPath   = "/v1/openapi.yaml"
	referencePath = "/v1/reference"
	healthPath    = "/health"
)

// healthTimeout bounds the health check's reads.
const healthTimeout = 2 * time.Second

// frontDoor serves the front door's paths and hands every other request
// to the gateway.
type frontDoor struct {
	next   http.Handler
	routes *route.Table
	store  interface {
		GetTenant(context.Context, string) (store.Tenant, error)
	}
	keyRing interface {
		Current() int
		HashVersion(context.Context, int, string) ([]byte, error)
	}
	console  bool
	upstream string // "" for the built-in echo
	ref      []refOperation
}

func (f *frontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		f.next.ServeHTTP(w, r)
		return
	}
	if _, _, ok := f.routes.Match(r.Method, r.URL.Path); ok {
		f.next.ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case landingPath:
		f.page(w, landing, struct {
			Upstream string
			Console  bool
		}{f.upstream, f.console})
	case openAPIPath:
		w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
		_, _ = w.Write(docs.OpenAPI)
	case referencePath:
		f.page(w, reference, f.ref)
	case healthPath:
		f.health(w, r)
	default:
		f.next.ServeHTTP(w, r)
	}
}

// page renders one of the front door's pages. They load nothing from
// elsewhere: no script, no font, no stylesheet.
func (f *frontDoor) page(w http.ResponseWriter, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		http.Error(w, "rendering failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(b.Bytes())
}

// health says whether the store answers and the key ring hashes: the two
// things every request needs. 503 when either does not.
func (f *frontDoor) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	out := map[string]string{"status": "ok", "store": "ok", "key_ring": "ok"}
	if _, err := f.store.GetTenant(ctx, "health-check"); err != nil && !errors.Is(err, store.ErrNotFound) {
		out["status"], out["store"] = "unavailable", err.Error()
	}
	if _, err := f.keyRing.HashVersion(ctx, f.keyRing.Current(), "health-check"); err != nil {
		out["status"], out["key_ring"] = "unavailable", err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if out["status"] != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(out)
}

// refOperation is one operation as the reference page shows it.
type refOperation struct {
	Method, Path, Summary, Description, Scopes, Body string
	Params                                           []refParam
	Responses                                        []refResponse
}

type refParam struct{ Name, In, Description, Type string }

type refResponse struct{ Status, Description string }

// referenceOf lays the document's operations out for the reference page,
// in the document's order of paths.
func referenceOf(doc []byte) ([]refOperation, error) {
	spec, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		return nil, err
	}
	var out []refOperation
	for _, path := range spec.Paths.InMatchingOrder() {
		item := spec.Paths.Value(path)
		for _, method := range []string{"GET", "POST", "PATCH", "PUT", "DELETE"} {
			op := item.GetOperation(method)
			if op == nil {
				continue
			}
			o := refOperation{Method: method, Path: path, Summary: op.Summary, Description: op.Description}
			if op.Security != nil {
				var ways []string
				for _, req := range *op.Security {
					for name, scopes := range req {
						if len(scopes) > 0 {
							name += " (" + strings.Join(scopes, ", ") + ")"
						}
						ways = append(ways, name)
					}
				}
				slices.Sort(ways)
				o.Scopes = strings.Join(ways, " or ")
			}
			for _, p := range slices.Concat(item.Parameters, op.Parameters) {
				if p.Value == nil {
					continue
				}
				rp := refParam{Name: p.Value.Name, In: p.Value.In, Description: p.Value.Description}
				if p.Value.Schema != nil && p.Value.Schema.Value != nil && p.Value.Schema.Value.Type != nil {
					rp.Type = strings.Join(*p.Value.Schema.Value.Type, " or ")
				}
				o.Params = append(o.Params, rp)
			}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil {
					o.Body = strings.TrimPrefix(mt.Schema.Ref, "#/components/schemas/")
				}
			}
			for status, resp := range op.Responses.Map() {
				desc := ""
				if resp.Value != nil && resp.Value.Description != nil {
					desc = *resp.Value.Description
				}
				o.Responses = append(o.Responses, refResponse{status, desc})
			}
			slices.SortFunc(o.Responses, func(a, b refResponse) int { return strings.Compare(a.Status, b.Status) })
			out = append(out, o)
		}
	}
	return out, nil
}

const pageStyle = `<style>body{font:15px/1.5 system-ui,sans-serif;max-width:58rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:.1rem .3rem}pre{padding:.6rem;white-space:pre-wrap}
table{border-collapse:collapse;margin:.4rem 0}td,th{border-bottom:1px solid #ddd;padding:.2rem .6rem;text-align:left;vertical-align:top}
.m{font-weight:bold;display:inline-block;min-width:4rem}h2{margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}</style>`

var landing = template.Must(template.New("landing").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>keyward, local</title>` + pageStyle + `</head><body>
<h1>keyward, running locally</h1>
<p>One process with the embedded store, a local key ring in place of KMS, the authorizer, the admin API and an emulation of API Gateway in front of them (README, Try it locally).</p>
<ul>
<li>The protected API: every path but those below, to {{if .Upstream}}<code>{{.Upstream}}</code>{{else}}the built-in echo{{end}}, with an API key: <code>curl -H "Authorization: Bearer $KEYWARD_DEMO_KEY" /invoices</code></li>
<li>The browser endpoint: <code>/browser/...</code>, the same routes for web pages</li>
<li>The admin API: <code>/v1/...</code>, with a management key: <a href="/v1/reference">reference</a>, <a href="/v1/openapi.yaml">OpenAPI document</a></li>
{{if .Console}}<li><a href="/console">The console</a>: the members' web pages (the banner prints their sign-ins)</li>{{end}}
<li><a href="/health">Health</a>: whether the store and the key ring are usable</li>
</ul>
<p>Documentation in the repository: README.md, docs/admin-api.md, docs/authorizer.md, docs/console.md, docs/cli.md, docs/deploy.md, docs/design.md.</p>
</body></html>`))

var reference = template.Must(template.New("reference").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>keyward admin API</title>` + pageStyle + `</head><body>
<h1>keyward's admin API</h1>
<p>Rendered from <a href="/v1/openapi.yaml">the OpenAPI document</a>; docs/admin-api.md tells the rest.</p>
<ul>{{range .}}<li><a href="#{{.Method}}{{.Path}}"><span class="m">{{.Method}}</span><code>{{.Path}}</code></a> {{.Summary}}</li>{{end}}</ul>
{{range .}}<h2 id="{{.Method}}{{.Path}}"><span class="m">{{.Method}}</span><code>{{.Path}}</code></h2>
<p><strong>{{.Summary}}</strong>{{with .Scopes}}. Authorized by {{.}}{{end}}</p>
{{with .Description}}<pre>{{.}}</pre>{{end}}
{{with .Params}}<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>{{range .}}<tr><td><code>{{.Name}}</code></td><td>{{.In}}</td><td>{{.Type}}</td><td>{{.Description}}</td></tr>{{end}}</table>{{end}}
{{with .Body}}<p>Body: <code>{{.}}</code> (see the document's schemas)</p>{{end}}
<table><tr><th>status</th><th>answer</th></tr>{{range .Responses}}<tr><td>{{.Status}}</td><td>{{.Description}}</td></tr>{{end}}</table>
{{end}}</body></html>`))
