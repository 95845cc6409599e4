package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// callerPage is a front end's page: call() fetches the API with a key
// in Authorization, as the README's example does, and reports what the
// page can read (status 0: the browser refused to let it read anything).
const callerPage = `<!doctype html><title>storefront</title><script>
async function call(url, key, method) {
  try {
    const r = await fetch(url, {method: method || "GET", headers: {"Authorization": "Bearer " + key}});
    return {status: r.status, body: await r.text()};
  } catch (e) {
    return {status: 0, body: String(e)};
  }
}
</script>`

// fetched is what a page read from one call.
type fetched struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// pageFrom serves callerPage on its own origin (a port of 127.0.0.1) and
// opens it in a new tab of browser.
func pageFrom(t *testing.T, browser context.Context) (origin string, tab context.Context) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(callerPage))
	}))
	t.Cleanup(srv.Close)
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	do(t, tab, "opening "+srv.URL, chromedp.Navigate(srv.URL))
	return srv.URL, tab
}

func call(t *testing.T, tab context.Context, method, url, key string) fetched {
	t.Helper()
	return eval[fetched](t, tab, fmt.Sprintf(`call(%q, %q, %q)`, url, key, method))
}

// wantRead checks that the page could read the answer, with its status
// and, in the error envelope, its code.
func wantRead(t *testing.T, what string, got fetched, status int, code string) map[string]any {
	t.Helper()
	var body map[string]any
	if got.Status != status || json.Unmarshal([]byte(got.Body), &body) != nil {
		t.Fatalf("%s: the page read %d %s, want %d", what, got.Status, got.Body, status)
	}
	if code != "" {
		if e, _ := body["error"].(map[string]any); e["code"] != code {
			t.Fatalf("%s: the page read %s, want code %s", what, got.Body, code)
		}
	}
	return body
}

// TestBrowserKeysInChromium: pages on two origins call the browser
// endpoint with fetch and a key limited to the first: the preflight is
// answered by the gateway, the allowed origin gets its answer, the other
// origin a 403 it can read (never the first one's cached decision), a
// write with a read-only browser key a readable 403 (one allowed to write
// writes), and a revoked key a readable 401.
func TestBrowserKeysInChromium(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	browser := newBrowser(t)
	allowed, shop := pageFrom(t, browser)
	other, elsewhere := pageFrom(t, browser)
	id, secret, key := s.createKey(s.adminKey(), fmt.Sprintf(
		`{"name":"storefront","environment":"live","scopes":["invoices:read"],"allowed_origins":[%q]}`, allowed))
	if key["allow_browser_writes"] != false {
		t.Fatalf("a browser key allows writes by default: %v", key)
	}
	api := s.base + "/browser/invoices"

	body := wantRead(t, "GET from the allowed origin", call(t, shop, "GET", api, secret), http.StatusOK, "")
	if body["path"] != "/invoices" || !strings.Contains(fmt.Sprint(body["authorizer"]), allowed) {
		t.Errorf("the upstream saw %v, want /invoices and the checked origin", body)
	}
	// Same key, same address, another origin: decided afresh, refused.
	wantRead(t, "GET from another origin", call(t, elsewhere, "GET", api, secret), http.StatusForbidden, "origin_not_allowed")
	wantRead(t, "GET from the allowed origin again", call(t, shop, "GET", api+"/inv_1", secret), http.StatusOK, "")
	wantRead(t, "POST with a read-only browser key", call(t, shop, "POST", api, secret), http.StatusForbidden, "insufficient_scope")
	// Writing takes the owner's say, and then works from the page.
	wantError(t, "a writing browser key without allow_browser_writes", s.post("/v1/keys", s.adminKey(), fmt.Sprintf(
		`{"name":"checkout","environment":"live","scopes":["invoices:write"],"allowed_origins":[%q]}`, allowed)),
		http.StatusBadRequest, "invalid_request", "invalid_request")
	_, writer, _ := s.createKey(s.adminKey(), fmt.Sprintf(
		`{"name":"checkout","environment":"live","scopes":["invoices:write"],"allowed_origins":[%q],"allow_browser_writes":true}`, allowed))
	wantRead(t, "POST with a writing browser key", call(t, shop, "POST", api, writer), http.StatusOK, "")
	// The server endpoint answers no preflight: a page cannot call it.
	if got := call(t, shop, "GET", s.base+"/invoices", secret); got.Status != 0 {
		t.Errorf("the server endpoint answered a page: %d %s", got.Status, got.Body)
	}

	s.revoke(s.adminKey(), id)
	wantRead(t, "GET with the revoked key", call(t, shop, "GET", api, secret), http.StatusUnauthorized, "")
	if other == allowed {
		t.Fatal("the two pages share an origin")
	}
	s.stop()
}
