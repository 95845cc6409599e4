package conformance

import (
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

func testPeppers(t *testing.T, e *env) {
	peppers, err := e.s.ListPeppers(e.ctx)
	if err != nil || len(peppers) != 0 {
		t.Fatalf("fresh store peppers: %v %v", err, peppers)
	}
	var want []store.Pepper
	for _, v := range []int{2, 1, 10} {
		p := store.Pepper{Version: v, Ciphertext: []byte{byte(v), 0, 1}, KeyID: "arn:aws:kms:eu-west-1:111122223333:key/abc", CreatedAt: e.clk.Now()}
		if err := e.s.CreatePepper(e.ctx, p); err != nil {
			t.Fatalf("CreatePepper(%d): %v", v, err)
		}
		e.clk.Advance(time.Minute)
		want = append(want, p)
	}
	want[0], want[1] = want[1], want[0]
	wantErr(t, e.s.CreatePepper(e.ctx, store.Pepper{Version: 2, Ciphertext: []byte("x"), CreatedAt: e.clk.Now()}), store.ErrAlreadyExists)
	got, err := e.s.ListPeppers(e.ctx)
	if err != nil {
		t.Fatalf("ListPeppers: %v", err)
	}
	for i := range got {
		got[i].CreatedAt = got[i].CreatedAt.UTC().Round(0)
	}
	wantEqual(t, "peppers oldest first", got, want)
}

func testRetirePepper(t *testing.T, e *env) {
	for v := 1; v <= 2; v++ {
		if err := e.s.CreatePepper(e.ctx, store.Pepper{Version: v, Ciphertext: []byte{byte(v)}, CreatedAt: e.clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	at := e.clk.Now().Add(time.Hour)
	if err := e.s.RetirePepper(e.ctx, 1, at); err != nil {
		t.Fatalf("RetirePepper: %v", err)
	}
	wantErr(t, e.s.RetirePepper(e.ctx, 1, at), store.ErrConflict)
	wantErr(t, e.s.RetirePepper(e.ctx, 9, at), store.ErrNotFound)
	peppers, err := e.s.ListPeppers(e.ctx)
	if err != nil || len(peppers) != 2 || !peppers[0].RetiredAt.Equal(at) || !peppers[1].RetiredAt.IsZero() {
		t.Fatalf("peppers after retiring v1: %v %+v", err, peppers)
	}
}

func testCheckpoints(t *testing.T, e *env) {
	if c, err := e.s.GetCheckpoint(e.ctx, "sweep"); err != nil || c != "" {
		t.Fatalf("fresh checkpoint: %q %v", c, err)
	}
	for _, c := range []string{"abc", "def"} {
		if err := e.s.PutCheckpoint(e.ctx, "sweep", c); err != nil {
			t.Fatal(err)
		}
		if got, err := e.s.GetCheckpoint(e.ctx, "sweep"); err != nil || got != c {
			t.Fatalf("checkpoint %q, want %q (%v)", got, c, err)
		}
	}
	if got, _ := e.s.GetCheckpoint(e.ctx, "other"); got != "" {
		t.Fatalf("jobs share checkpoints: %q", got)
	}
	if err := e.s.PutCheckpoint(e.ctx, "sweep", ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.s.GetCheckpoint(e.ctx, "sweep"); got != "" {
		t.Fatalf("cleared checkpoint: %q", got)
	}
}
