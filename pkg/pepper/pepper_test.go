package pepper

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/store"
)

const testKeyARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// recordingKMS stands in for KMS: it checks the key id, key spec and
// encryption context of every call against what the key policy requires,
// records the calls, and really encrypts (AES-GCM with the context as
// additional data), so a ciphertext only opens under its own context.
type recordingKMS struct {
	t     *testing.T
	ring  *LocalKeyring
	mu    sync.Mutex
	calls []string
	fail  error
}

func newRecordingKMS(t *testing.T) *recordingKMS {
	ring, err := NewLocalKeyring(bytes.Repeat([]byte{7}, Size))
	if err != nil {
		t.Fatal(err)
	}
	return &recordingKMS{t: t, ring: ring}
}

func (f *recordingKMS) checkContext(op string, ctx map[string]string) {
	f.t.Helper()
	if len(ctx) != 2 || ctx["purpose"] != Purpose || ctx["version"] == "" {
		f.t.Errorf("%s: encryption context %v lacks purpose %q and version", op, ctx, Purpose)
	}
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%s v%s", op, ctx["version"]))
	f.mu.Unlock()
}

func (f *recordingKMS) GenerateDataKeyWithoutPlaintext(_ context.Context, in *kms.GenerateDataKeyWithoutPlaintextInput, _ ...func(*kms.Options)) (*kms.GenerateDataKeyWithoutPlaintextOutput, error) {
	f.t.Helper()
	if aws.ToString(in.KeyId) != testKeyARN {
		f.t.Errorf("GenerateDataKeyWithoutPlaintext key %q, want %q", aws.ToString(in.KeyId), testKeyARN)
	}
	if in.KeySpec != types.DataKeySpecAes256 || in.NumberOfBytes != nil {
		f.t.Errorf("GenerateDataKeyWithoutPlaintext spec %q bytes %v, want AES_256", in.KeySpec, in.NumberOfBytes)
	}
	f.checkContext("generate", in.EncryptionContext)
	if f.fail != nil {
		return nil, f.fail
	}
	plain := make([]byte, Size)
	if _, err := rand.Read(plain); err != nil {
		return nil, err
	}
	ct, err := f.ring.Encrypt(plain, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kms.GenerateDataKeyWithoutPlaintextOutput{CiphertextBlob: ct, KeyId: aws.String(testKeyARN)}, nil
}

func (f *recordingKMS) Decrypt(_ context.Context, in *kms.DecryptInput, _ ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	f.t.Helper()
	if aws.ToString(in.KeyId) != testKeyARN {
		f.t.Errorf("Decrypt key %q, want %q", aws.ToString(in.KeyId), testKeyARN)
	}
	if in.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		f.t.Errorf("Decrypt algorithm %q", in.EncryptionAlgorithm)
	}
	f.checkContext("decrypt", in.EncryptionContext)
	if f.fail != nil {
		return nil, f.fail
	}
	plain, err := f.ring.Decrypt(in.CiphertextBlob, in.EncryptionContext)
	if err != nil {
		return nil, fmt.Errorf("InvalidCiphertextException: %w", err)
	}
	return &kms.DecryptOutput{Plaintext: plain, KeyId: aws.String(testKeyARN)}, nil
}

var _ KMSAPI = (*kms.Client)(nil)

func TestKMSAdapter(t *testing.T) {
	fake := newRecordingKMS(t)
	k := KMS{Client: fake, KeyID: testKeyARN}
	ct, keyID, err := k.GenerateWrapped(t.Context(), 3)
	if err != nil || keyID != testKeyARN {
		t.Fatalf("GenerateWrapped: %q %v", keyID, err)
	}
	plain, err := k.Unwrap(t.Context(), ct, 3)
	if err != nil || len(plain) != Size {
		t.Fatalf("Unwrap: %d bytes, %v", len(plain), err)
	}
	// The version is part of the context: a ciphertext of version 3 does
	// not open as version 4.
	if _, err := k.Unwrap(t.Context(), ct, 4); err == nil {
		t.Fatal("ciphertext of version 3 opened as version 4")
	}
	want := []string{"generate v3", "decrypt v3", "decrypt v4"}
	if fmt.Sprint(fake.calls) != fmt.Sprint(want) {
		t.Fatalf("KMS calls %v, want %v", fake.calls, want)
	}

	fake.fail = errors.New("AccessDeniedException")
	if _, _, err := k.GenerateWrapped(t.Context(), 5); err == nil || !errors.Is(err, fake.fail) {
		t.Fatalf("GenerateWrapped error %v", err)
	}
	if _, err := k.Unwrap(t.Context(), ct, 3); !errors.Is(err, fake.fail) {
		t.Fatalf("Unwrap error %v", err)
	}
}

type shortKMS struct{ KMSAPI }

func (shortKMS) Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	return &kms.DecryptOutput{Plaintext: []byte("short")}, nil
}

func TestKMSAdapterRefusesWrongSize(t *testing.T) {
	if _, err := (KMS{Client: shortKMS{}, KeyID: testKeyARN}).Unwrap(t.Context(), []byte("x"), 1); err == nil {
		t.Fatal("accepted a 5-byte pepper")
	}
}

func TestLocalKeyringFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "master.key")
	ring, err := OpenLocalKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 || info.Size() != Size {
		t.Fatalf("master key file: %v %v", info, err)
	}
	ct, keyID, err := ring.GenerateWrapped(t.Context(), 1)
	if err != nil || keyID != ring.KeyID() {
		t.Fatal(err)
	}
	again, err := OpenLocalKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := ring.Unwrap(t.Context(), ct, 1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := again.Unwrap(t.Context(), ct, 1)
	if err != nil || !bytes.Equal(p1, p2) {
		t.Fatalf("reopened ring unwraps differently: %v", err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalKeyring(path); err == nil {
		t.Fatal("world-readable master key accepted")
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalKeyring(path); err == nil {
		t.Fatal("short master key accepted")
	}
}

func TestLocalKeyringBindsContext(t *testing.T) {
	ring, err := NewLocalKeyring(bytes.Repeat([]byte{1}, Size))
	if err != nil {
		t.Fatal(err)
	}
	ctx := EncryptionContext(2)
	ct, err := ring.Encrypt([]byte("pepper-bytes"), ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ring.Decrypt(ct, ctx); err != nil || string(got) != "pepper-bytes" {
		t.Fatalf("Decrypt: %q %v", got, err)
	}
	moved := []map[string]string{
		EncryptionContext(3),
		{"purpose": "other", "version": "2"},
		{"purpose": Purpose},
		{"purpose": Purpose, "version": "2", "extra": ""},
		// The encoding is unambiguous: shifting text between name and value changes it.
		{"purpose": Purpose + "version", "": "2"},
	}
	for _, m := range moved {
		if _, err := ring.Decrypt(ct, m); err == nil {
			t.Errorf("ciphertext opened under context %v", m)
		}
	}
	tampered := bytes.Clone(ct)
	tampered[len(tampered)-1] ^= 1
	if _, err := ring.Decrypt(tampered, ctx); err == nil {
		t.Error("tampered ciphertext opened")
	}
	other, _ := NewLocalKeyring(bytes.Repeat([]byte{2}, Size))
	if _, err := other.Decrypt(ct, ctx); err == nil {
		t.Error("ciphertext opened under another master key")
	}
	if _, err := ring.Decrypt(ct[:5], ctx); err == nil {
		t.Error("truncated ciphertext opened")
	}
	if _, err := NewLocalKeyring([]byte("short")); err == nil {
		t.Error("short master key accepted")
	}
}

// memPeppers is the smallest VersionStore: the store contract itself is
// tested by the conformance suite.
type memPeppers struct {
	mu      sync.Mutex
	peppers map[int]store.Pepper
	lists   int
}

func (m *memPeppers) ListPeppers(context.Context) ([]store.Pepper, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	var out []store.Pepper
	for v := 1; v <= len(m.peppers)+10; v++ {
		if p, ok := m.peppers[v]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (m *memPeppers) CreatePepper(_ context.Context, p store.Pepper) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.peppers[p.Version]; ok {
		return store.ErrAlreadyExists
	}
	if m.peppers == nil {
		m.peppers = map[int]store.Pepper{}
	}
	m.peppers[p.Version] = p
	return nil
}

func newRingFixture(t *testing.T) (*memPeppers, *LocalKeyring, *clock.Manual) {
	ring, err := NewLocalKeyring(bytes.Repeat([]byte{9}, Size))
	if err != nil {
		t.Fatal(err)
	}
	return &memPeppers{}, ring, clock.NewManual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

func TestRingHashAndVerify(t *testing.T) {
	src, kr, clk := newRingFixture(t)
	if _, err := load(t.Context(), src, kr, clk.Now); err == nil {
		t.Fatal("Load without any pepper succeeded")
	}
	p1, err := Create(t.Context(), src, kr, clk.Now())
	if err != nil || p1.Version != 1 || p1.KeyID != kr.KeyID() {
		t.Fatalf("Create: %+v %v", p1, err)
	}
	r, err := load(t.Context(), src, kr, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	const token = "sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH000000"
	v, sum, err := r.Hash(t.Context(), token)
	if err != nil || v != 1 || len(sum) != sha256.Size {
		t.Fatalf("Hash: %d %x %v", v, sum, err)
	}
	plain, _ := kr.Unwrap(t.Context(), p1.Ciphertext, 1)
	mac := hmac.New(sha256.New, plain)
	mac.Write([]byte(token))
	if !bytes.Equal(sum, mac.Sum(nil)) {
		t.Fatal("Hash is not HMAC-SHA256(pepper, token)")
	}
	if ok, err := r.Verify(t.Context(), 1, token, sum); !ok || err != nil {
		t.Fatalf("Verify(right) = %v %v", ok, err)
	}
	for _, bad := range []string{token[:len(token)-1] + "1", token + "x", ""} {
		if ok, err := r.Verify(t.Context(), 1, bad, sum); ok || err != nil {
			t.Fatalf("Verify(%q) = %v %v", bad, ok, err)
		}
	}
	if ok, _ := r.Verify(t.Context(), 1, token, sum[:31]); ok {
		t.Fatal("Verify accepted a truncated hash")
	}
	long := string(bytes.Repeat([]byte("a"), 200))
	lsum, err := r.HashVersion(t.Context(), 1, long)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Verify(t.Context(), 1, long, lsum); !ok {
		t.Fatal("long input does not verify")
	}
	if ok, _ := r.Verify(t.Context(), 1, long[:64], lsum); ok {
		t.Fatal("long input verified by its first 64 bytes")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Verify(t.Context(), 1, token, sum) }); n != 0 && !raceEnabled {
		t.Fatalf("Verify allocates %v times", n)
	}
}

func TestRingReloadsUnknownVersionOnceThenFailsClosed(t *testing.T) {
	src, kr, clk := newRingFixture(t)
	if _, err := Create(t.Context(), src, kr, clk.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := load(t.Context(), src, kr, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	// Another process rotates; this one meets a key hashed under v2.
	clk.Advance(time.Minute)
	if _, err := Create(t.Context(), src, kr, clk.Now()); err != nil {
		t.Fatal(err)
	}
	lists := src.lists
	if _, err := r.HashVersion(t.Context(), 2, "t"); err != nil {
		t.Fatalf("HashVersion(2) after rotation: %v", err)
	}
	if src.lists != lists+1 || r.Current() != 2 {
		t.Fatalf("reloads %d, current %d", src.lists-lists, r.Current())
	}
	// An unknown version fails closed, and reloads at most once per interval.
	clk.Advance(time.Minute)
	for range 5 {
		if _, err := r.Verify(t.Context(), 9, "t", make([]byte, 32)); !errors.Is(err, ErrUnknownVersion) {
			t.Fatalf("Verify(v9) error %v", err)
		}
	}
	if src.lists != lists+2 {
		t.Fatalf("%d reloads for an unknown version, want 1", src.lists-lists-1)
	}
	clk.Advance(reloadInterval)
	_, _ = r.Verify(t.Context(), 9, "t", nil)
	if src.lists != lists+3 {
		t.Fatalf("no reload after the interval: %d", src.lists-lists)
	}
}

func TestRingRefreshesCurrentPeriodically(t *testing.T) {
	src, kr, clk := newRingFixture(t)
	if _, err := Create(t.Context(), src, kr, clk.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := load(t.Context(), src, kr, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(t.Context(), src, kr, clk.Now()); err != nil {
		t.Fatal(err)
	}
	lists := src.lists
	for range 3 {
		if r.Current() != 1 {
			t.Fatal("picked up a rotation before the refresh interval")
		}
	}
	clk.Advance(RefreshInterval)
	if r.Current() != 2 || src.lists != lists+1 {
		t.Fatalf("after the refresh interval: current %d, %d reloads", r.Current(), src.lists-lists)
	}
	if r.Current() != 2 || src.lists != lists+1 {
		t.Fatal("reloaded again within the interval")
	}
}

func TestRingSkipsRetiredAndFailsOnBadCiphertext(t *testing.T) {
	src, kr, clk := newRingFixture(t)
	for range 3 {
		if _, err := Create(t.Context(), src, kr, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	p3 := src.peppers[3]
	p3.RetiredAt = clk.Now()
	src.peppers[3] = p3
	r, err := load(t.Context(), src, kr, clk.Now)
	if err != nil || r.Current() != 2 {
		t.Fatalf("current %d, %v; want 2", r.Current(), err)
	}
	p2 := src.peppers[2]
	p2.Ciphertext = p3.Ciphertext // moved from version 3: must not open as 2
	src.peppers[2] = p2
	if _, err := load(t.Context(), src, kr, clk.Now); err == nil {
		t.Fatal("Load accepted a ciphertext moved between versions")
	}
}

// TestCreateConcurrentNeverSharesVersion: racing rotations either win a
// version of their own or fail with ErrAlreadyExists; none overwrites.
func TestCreateConcurrentNeverSharesVersion(t *testing.T) {
	src, kr, clk := newRingFixture(t)
	fake := newRecordingKMS(t)
	var wg sync.WaitGroup
	created := make([]store.Pepper, 6)
	errs := make([]error, len(created))
	for i := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var gen Generator = kr
			if i%2 == 1 {
				gen = KMS{Client: fake, KeyID: testKeyARN}
			}
			created[i], errs[i] = Create(t.Context(), src, gen, clk.Now())
		}()
	}
	wg.Wait()
	won := map[int]store.Pepper{}
	for i, err := range errs {
		switch {
		case err == nil:
			if _, dup := won[created[i].Version]; dup {
				t.Fatalf("version %d created twice", created[i].Version)
			}
			won[created[i].Version] = created[i]
		case !errors.Is(err, store.ErrAlreadyExists):
			t.Fatalf("Create: %v", err)
		}
	}
	for v, p := range won {
		if !bytes.Equal(src.peppers[v].Ciphertext, p.Ciphertext) {
			t.Fatalf("version %d stored differs from its creator's", v)
		}
	}
	if len(won) != len(src.peppers) || len(won) == 0 {
		t.Fatalf("%d winners, %d stored versions", len(won), len(src.peppers))
	}
}

func benchRing(b *testing.B) (*Ring, string, []byte) {
	kr, _ := NewLocalKeyring(bytes.Repeat([]byte{9}, Size))
	src := &memPeppers{}
	if _, err := Create(context.Background(), src, kr, time.Now()); err != nil {
		b.Fatal(err)
	}
	r, err := Load(context.Background(), src, kr)
	if err != nil {
		b.Fatal(err)
	}
	token := "sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH000000"
	sum, _ := r.HashVersion(context.Background(), 1, token)
	return r, token, sum
}

// BenchmarkVerify is the pepper part of every authorization.
func BenchmarkVerify(b *testing.B) {
	r, token, sum := benchRing(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := r.Verify(ctx, 1, token, sum); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkHMACFloor is one bare HMAC-SHA256 of a token with the key
// schedule already done: the physical minimum Verify is compared with.
func BenchmarkHMACFloor(b *testing.B) {
	mac := hmac.New(sha256.New, bytes.Repeat([]byte{9}, Size))
	token := []byte("sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH000000")
	var sum [sha256.Size]byte
	b.ReportAllocs()
	for b.Loop() {
		mac.Reset()
		mac.Write(token)
		mac.Sum(sum[:0])
	}
}

func BenchmarkHashForStorage(b *testing.B) {
	r, token, _ := benchRing(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.Hash(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}
