package config

import (
	"fmt"
	"time"
)

// Alerts are the thresholds of the suspicious-use rules (package usage),
// gateway.json's "alerts" (Gateway.AlertRules).
type Alerts struct {
	// LearningHours is how long after a key's first use its client
	// networks are learnt before a new one raises key.new_network.
	LearningHours int `json:"learning_hours"`
	// NetworkMemoryDays is how long a network stays known without use.
	NetworkMemoryDays int `json:"network_memory_days"`
	// An hour of more than SpikeFactor times the key's trailing 7-day
	// hourly p95, and more than SpikeFloor requests, is a key.spike.
	SpikeFactor float64 `json:"spike_factor"`
	SpikeFloor  int64   `json:"spike_floor"`
	// InvalidSecrets wrong secrets for a real key within
	// InvalidSecretMinutes are a key.invalid_secret.
	InvalidSecrets       int64 `json:"invalid_secrets"`
	InvalidSecretMinutes int   `json:"invalid_secret_minutes"`
	// A key replaced by rotation that is used less than OldKeyMinutes
	// before its overlap ends is a key.old_key_in_use.
	OldKeyMinutes int `json:"old_key_minutes"`
	// NetworkBitsV4 and NetworkBitsV6 are the prefix lengths of a client
	// network, the unit of usage's networks and of key.new_network.
	NetworkBitsV4 int `json:"network_bits_v4"`
	NetworkBitsV6 int `json:"network_bits_v6"`
}

// DefaultAlerts are the rules' thresholds when gateway.json sets none.
var DefaultAlerts = Alerts{LearningHours: 7 * 24, NetworkMemoryDays: 30, SpikeFactor: 10, SpikeFloor: 1000,
	InvalidSecrets: 20, InvalidSecretMinutes: 10, OldKeyMinutes: 60, NetworkBitsV4: 24, NetworkBitsV6: 48}

// AlertRules are the gateway's alert thresholds: DefaultAlerts when it
// sets none.
func (g Gateway) AlertRules() Alerts {
	if g.Alerts == (Alerts{}) {
		return DefaultAlerts
	}
	return g.Alerts
}

// Learning, NetworkMemory, InvalidSecretWindow and OldKeyWarning are the
// thresholds as durations.
func (a Alerts) Learning() time.Duration { return time.Duration(a.LearningHours) * time.Hour }
func (a Alerts) NetworkMemory() time.Duration {
	return time.Duration(a.NetworkMemoryDays) * 24 * time.Hour
}
func (a Alerts) InvalidSecretWindow() time.Duration {
	return time.Duration(a.InvalidSecretMinutes) * time.Minute
}
func (a Alerts) OldKeyWarning() time.Duration { return time.Duration(a.OldKeyMinutes) * time.Minute }

// Validate refuses thresholds that would alert on everything or never.
func (a Alerts) Validate() error {
	switch {
	case a.LearningHours < 0 || a.LearningHours > 90*24:
		return fmt.Errorf("config: alerts: learning_hours %d outside 0..2160", a.LearningHours)
	case a.NetworkMemoryDays < 1 || a.NetworkMemoryDays > 90:
		return fmt.Errorf("config: alerts: network_memory_days %d outside 1..90 (usage is kept 90 days)", a.NetworkMemoryDays)
	case a.SpikeFactor < 2 || a.SpikeFloor < 1:
		return fmt.Errorf("config: alerts: spike_factor must be at least 2 and spike_floor at least 1")
	case a.InvalidSecrets < 1 || a.InvalidSecretMinutes < 1 || a.InvalidSecretMinutes > 60:
		return fmt.Errorf("config: alerts: invalid_secrets must be at least 1 within 1..60 invalid_secret_minutes")
	case a.OldKeyMinutes < 1 || a.OldKeyMinutes > 7*24*60:
		return fmt.Errorf("config: alerts: old_key_minutes %d outside 1..10080", a.OldKeyMinutes)
	case a.NetworkBitsV4 < 8 || a.NetworkBitsV4 > 32 || a.NetworkBitsV6 < 16 || a.NetworkBitsV6 > 128:
		return fmt.Errorf("config: alerts: network_bits_v4 must be 8..32 and network_bits_v6 16..128")
	}
	return nil
}
