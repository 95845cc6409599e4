// Package pepper manages the secret that keyward mixes into every stored
// key hash: versioned 32-byte peppers, created and unwrapped by a keyring
// (AWS KMS in the cloud, an AES-256-GCM file key ring locally), stored only
// as ciphertext, and held in memory by a Ring that computes and verifies
// HMAC-SHA256(pepper, token).
package pepper

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// Size is the length of a pepper in bytes.
const Size = 32

// Purpose is the encryption context value that binds a ciphertext to its
// use; the KMS key policy grants Decrypt only under it.
const Purpose = "api-key-pepper"

// EncryptionContext is the context every pepper ciphertext is bound to.
func EncryptionContext(version int) map[string]string {
	return map[string]string{"purpose": Purpose, "version": strconv.Itoa(version)}
}

// Generator creates a new pepper and returns only its ciphertext: the code
// that rotates peppers never holds a plaintext one.
type Generator interface {
	GenerateWrapped(ctx context.Context, version int) (ciphertext []byte, keyID string, err error)
}

// Unwrapper recovers a pepper from its ciphertext.
type Unwrapper interface {
	Unwrap(ctx context.Context, ciphertext []byte, version int) ([]byte, error)
}

// KMSAPI is the part of the KMS client keyward calls; *kms.Client has it.
type KMSAPI interface {
	GenerateDataKeyWithoutPlaintext(ctx context.Context, in *kms.GenerateDataKeyWithoutPlaintextInput, opts ...func(*kms.Options)) (*kms.GenerateDataKeyWithoutPlaintextOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, opts ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// KMS wraps peppers with a customer-managed KMS key.
type KMS struct {
	Client KMSAPI
	KeyID  string // key id, ARN or alias of the customer-managed key
}

// GenerateWrapped asks KMS for a new 256-bit data key without its plaintext.
func (k KMS) GenerateWrapped(ctx context.Context, version int) ([]byte, string, error) {
	out, err := k.Client.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{
		KeyId:             aws.String(k.KeyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: EncryptionContext(version),
	})
	if err != nil {
		return nil, "", fmt.Errorf("pepper: kms generate version %d: %w", version, err)
	}
	if len(out.CiphertextBlob) == 0 || out.KeyId == nil {
		return nil, "", fmt.Errorf("pepper: kms generate version %d: empty response", version)
	}
	return out.CiphertextBlob, *out.KeyId, nil
}

// Unwrap decrypts a pepper. Naming the key makes KMS refuse a ciphertext
// made under any other key, and the context refuses one made for another
// version or purpose.
func (k KMS) Unwrap(ctx context.Context, ciphertext []byte, version int) ([]byte, error) {
	out, err := k.Client.Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:      ciphertext,
		KeyId:               aws.String(k.KeyID),
		EncryptionContext:   EncryptionContext(version),
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault,
	})
	if err != nil {
		return nil, fmt.Errorf("pepper: kms decrypt version %d: %w", version, err)
	}
	if len(out.Plaintext) != Size {
		return nil, fmt.Errorf("pepper: kms decrypt version %d: %d bytes, want %d", version, len(out.Plaintext), Size)
	}
	return out.Plaintext, nil
}

// LocalKeyring is the local stack's stand-in for KMS: real AES-256-GCM
// under a master key kept in a 0600 file, with the encryption context bound
// as additional data, so a ciphertext moved to another version or purpose
// fails to decrypt exactly as it would with KMS.
type LocalKeyring struct {
	aead  cipher.AEAD
	keyID string
}

// ciphertextVersion is the first byte of every local ciphertext, so that
// the format can change without misreading old data.
const ciphertextVersion = 1

// OpenLocalKeyring loads the master key at path, creating it (and its
// directory, 0700) on first use.
func OpenLocalKeyring(path string) (*LocalKeyring, error) {
	master, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		master, err = createMasterKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("pepper: local keyring %s: %w", path, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("pepper: local keyring %s: %w", path, err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("pepper: local keyring %s is readable by others (mode %v); chmod 600 it", path, info.Mode().Perm())
	}
	return NewLocalKeyring(master)
}

func createMasterKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	master := make([]byte, Size)
	if _, err := rand.Read(master); err != nil {
		return nil, err
	}
	// O_EXCL: if another process created it meanwhile, use theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(master); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return master, f.Close()
}

// NewLocalKeyring returns a key ring over a 32-byte master key.
func NewLocalKeyring(master []byte) (*LocalKeyring, error) {
	if len(master) != Size {
		return nil, fmt.Errorf("pepper: local master key is %d bytes, want %d", len(master), Size)
	}
	block, err := aes.NewCipher(master)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256(master)
	return &LocalKeyring{aead: aead, keyID: "local:" + hex.EncodeToString(id[:8])}, nil
}

// KeyID names the master key (a digest, not the key).
func (l *LocalKeyring) KeyID() string { return l.keyID }

// Encrypt seals plaintext under the master key, bound to context.
func (l *LocalKeyring) Encrypt(plaintext []byte, context map[string]string) ([]byte, error) {
	out := make([]byte, 1+l.aead.NonceSize(), 1+l.aead.NonceSize()+len(plaintext)+l.aead.Overhead())
	out[0] = ciphertextVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("pepper: nonce: %w", err)
	}
	return l.aead.Seal(out, out[1:], plaintext, contextAAD(context)), nil
}

// Decrypt opens a ciphertext from Encrypt; it fails unless context is the
// one the ciphertext was sealed with.
func (l *LocalKeyring) Decrypt(ciphertext []byte, context map[string]string) ([]byte, error) {
	n := l.aead.NonceSize()
	if len(ciphertext) < 1+n+l.aead.Overhead() || ciphertext[0] != ciphertextVersion {
		return nil, errors.New("pepper: not a local keyring ciphertext")
	}
	plain, err := l.aead.Open(nil, ciphertext[1:1+n], ciphertext[1+n:], contextAAD(context))
	if err != nil {
		return nil, errors.New("pepper: local keyring: ciphertext does not open under this key and context")
	}
	return plain, nil
}

// GenerateWrapped makes a random pepper and returns only its ciphertext.
func (l *LocalKeyring) GenerateWrapped(_ context.Context, version int) ([]byte, string, error) {
	plain := make([]byte, Size)
	if _, err := rand.Read(plain); err != nil {
		return nil, "", fmt.Errorf("pepper: generate: %w", err)
	}
	ct, err := l.Encrypt(plain, EncryptionContext(version))
	clear(plain)
	return ct, l.keyID, err
}

// Unwrap decrypts a pepper made by GenerateWrapped.
func (l *LocalKeyring) Unwrap(_ context.Context, ciphertext []byte, version int) ([]byte, error) {
	plain, err := l.Decrypt(ciphertext, EncryptionContext(version))
	if err != nil {
		return nil, fmt.Errorf("pepper: unwrap version %d: %w", version, err)
	}
	if len(plain) != Size {
		return nil, fmt.Errorf("pepper: unwrap version %d: %d bytes, want %d", version, len(plain), Size)
	}
	return plain, nil
}

// contextAAD encodes an encryption context canonically (sorted, length-
// prefixed), so that no two different contexts share an encoding.
func contextAAD(context map[string]string) []byte {
	names := make([]string, 0, len(context))
	for k := range context {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%d:%s%d:%s", len(k), k, len(context[k]), context[k])
	}
	return []byte(b.String())
}
