// Package e2e runs Flotilla's real binaries — flotilla-controlplane,
// flotilla-agent and grpcurl — as local processes, the way an engineer
// would, and checks what they report. `make test` builds the binaries into
// bin/ and points FLOTILLA_BIN_DIR at it; with FLOTILLA_E2E=1 (CI) a
// missing binary fails the run instead of skipping it. The rollout
// scenarios it shares with package fleet (the same binaries as containers)
// live in internal/rollouttest.
package e2e
