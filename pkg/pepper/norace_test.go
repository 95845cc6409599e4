//go:build !race

package pepper

const raceEnabled = false
