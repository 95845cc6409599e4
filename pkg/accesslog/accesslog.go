// Package accesslog holds what the one line each of keyward's HTTP
// handlers logs per request needs of the answer: its status.
package accesslog

import "net/http"

// Recorder is a ResponseWriter that remembers the status it answered
// with: 200 until WriteHeader says otherwise.
type Recorder struct {
	http.ResponseWriter
	Status int
}

// NewRecorder records what w is answered with.
func NewRecorder(w http.ResponseWriter) *Recorder {
	return &Recorder{ResponseWriter: w, Status: http.StatusOK}
}

// WriteHeader records the status and sends it.
func (r *Recorder) WriteHeader(code int) {
	r.Status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController (a reverse proxy's flushes) reach
// the connection.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
