package stack_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStackDependsOnNoLocalEmulation: the deployed stack reads its
// settings from the packages the functions use, never from the local
// stack or a test helper (internal/layers checks the main module).
func TestStackDependsOnNoLocalEmulation(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./...")
	cmd.Dir = ".." // the infra module's root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		p, ok := strings.CutPrefix(dep, "github.com/keyward/keyward/")
		if !ok || strings.HasPrefix(p, "infra/") {
			continue
		}
		if strings.HasPrefix(p, "pkg/localstack") || strings.HasPrefix(p, "internal/") {
			t.Errorf("the stack depends on %s", p)
		}
	}
}
