package localstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/keyward/keyward/pkg/admin"
)

// plans is the local stand-in for API Gateway's API keys and usage plans:
// the gateway emulation enforces them in memory, and this file keeps them
// across restarts, as AWS keeps API keys.
type plans struct {
	path string
	next admin.RateLimits // the gateway emulation

	mu    sync.Mutex
	tiers map[string]string // identity -> tier
}

func openPlans(path string, next admin.RateLimits) (*plans, error) {
	p := &plans{path: path, next: next, tiers: map[string]string{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &p.tiers); err != nil {
		return nil, fmt.Errorf("usage plans %s: %w", path, err)
	}
	for identity, tier := range p.tiers {
		if err := next.Provision(context.Background(), identity, tier); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *plans) Provision(ctx context.Context, identity, tier string) error {
	if err := p.next.Provision(ctx, identity, tier); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tiers[identity] = tier
	return p.save()
}

func (p *plans) Remove(ctx context.Context, identity string) error {
	if err := p.next.Remove(ctx, identity); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.tiers, identity)
	return p.save()
}

// save writes the file atomically: a temporary file, synced, renamed over.
func (p *plans) save() error {
	data, err := json.Marshal(p.tiers)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.path), ".usage-plans-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p.path)
}
