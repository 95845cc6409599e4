package accesslog

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRecorder(t *testing.T) {
	w := httptest.NewRecorder()
	r := NewRecorder(w)
	if r.Status != http.StatusOK {
		t.Fatalf("before any WriteHeader: %d", r.Status)
	}
	r.WriteHeader(http.StatusTeapot)
	if r.Status != http.StatusTeapot || w.Code != http.StatusTeapot || http.NewResponseController(r) == nil || r.Unwrap() != w {
		t.Fatalf("recorded %d, sent %d", r.Status, w.Code)
	}
}
