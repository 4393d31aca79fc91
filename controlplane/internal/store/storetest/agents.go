package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func testAgentRoundTrip(t *testing.T, open Opener) {
	tests := []struct {
		name  string
		agent store.Agent
	}{
		{
			name: "every field set",
			agent: store.Agent{
				ID:             "agent-full",
				Hostname:       "web-1",
				Labels:         map[string]string{"env": "prod", "role": "web"},
				PinnedLabels:   map[string]string{"env": "prod"},
				Version:        "1.2.3",
				State:          store.AgentConnected,
				StateReason:    "stream open",
				StateChangedAt: t0.Add(1),
				RegisteredAt:   t0.Add(2),
				ConnectedAt:    t0.Add(3).In(time.FixedZone("CEST", 2*60*60)),
				LastSeenAt:     time.Now(), // carries a monotonic reading
				PeerAddress:    "10.0.0.7:51234",
				CertSerial:     "0a1b2c",
				CertNotAfter:   t0.Add(24 * time.Hour),
				Hello:          []byte{0x0a, 0x00, 0xff},
				LastHeartbeat:  []byte{0x12, 0x34},
			},
		},
		{
			name:  "zero values, nil maps and slices",
			agent: store.Agent{ID: "agent-zero"},
		},
		{
			name: "empty maps and slices stay non-nil",
			agent: store.Agent{
				ID:            "agent-empty",
				Labels:        map[string]string{},
				PinnedLabels:  map[string]string{},
				Hello:         []byte{},
				LastHeartbeat: []byte{},
			},
		},
		{
			// The epoch is not the zero time.Time and must not read back as it.
			name: "Unix epoch",
			agent: store.Agent{
				ID:             "agent-epoch",
				StateChangedAt: time.Unix(0, 0),
				RegisteredAt:   time.Unix(0, 1),
				ConnectedAt:    time.Unix(0, -1),
			},
		},
	}
	s := open(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.agent
			want.JoinTokenID = "tok-" + want.ID
			registered := mustRegisterAgent(t, s, tt.agent)
			assertEqual(t, registered, want)
			assertEqual(t, mustGetAgent(t, s, tt.agent.ID), want)
		})
	}
}

func testRegisterAgentOutOfRangeTime(t *testing.T, open Opener) {
	s := open(t)
	tok := newJoinToken("tok", 1)
	mustCreateJoinToken(t, s, tok)
	_, err := s.RegisterAgent(context.Background(), tok.Hash, t0, func(store.JoinToken) (store.Agent, error) {
		return store.Agent{ID: "a", RegisteredAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil
	})
	if err == nil {
		t.Fatal("RegisterAgent stored a time past 2262")
	}
	if got := mustGetJoinToken(t, s, tok.ID).Uses; got != 0 {
		t.Errorf("uses = %d after a failed insert, want 0", got)
	}
}

func testGetAgentNotFound(t *testing.T, open Opener) {
	s := open(t)
	_, err := s.GetAgent(context.Background(), "nope")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAgent = %v, want ErrNotFound", err)
	}
}

func testListAgents(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	got, err := s.ListAgents(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("ListAgents on empty store = %v, %v; want none", got, err)
	}
	for _, id := range []string{"c", "a", "b"} {
		mustRegisterAgent(t, s, store.Agent{ID: id, Hostname: "host-" + id})
	}
	got, err = s.ListAgents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range got {
		ids = append(ids, a.ID)
	}
	if fmt.Sprint(ids) != "[a b c]" {
		t.Errorf("ListAgents IDs = %v, want [a b c]", ids)
	}
	assertEqual(t, got[0], store.Agent{ID: "a", Hostname: "host-a", JoinTokenID: "tok-a"})
}

func testRegisterAgent(t *testing.T, open Opener) {
	tests := []struct {
		name    string
		token   func(store.JoinToken) store.JoinToken // edits the stored token
		hash    []byte                                // presented hash; nil: the token's
		wantErr error
	}{
		{name: "valid", token: same},
		{name: "valid on last use", token: func(t store.JoinToken) store.JoinToken { t.Uses = 2; return t }},
		{name: "unknown", token: same, hash: hashOf("wrong secret"), wantErr: store.ErrJoinTokenInvalid},
		{name: "expires now", token: func(t store.JoinToken) store.JoinToken { t.ExpiresAt = t0; return t }, wantErr: store.ErrJoinTokenInvalid},
		{name: "expired", token: func(t store.JoinToken) store.JoinToken { t.ExpiresAt = t0.Add(-time.Second); return t }, wantErr: store.ErrJoinTokenInvalid},
		{name: "no expiry", token: func(t store.JoinToken) store.JoinToken { t.ExpiresAt = time.Time{}; return t }, wantErr: store.ErrJoinTokenInvalid},
		{name: "revoked", token: func(t store.JoinToken) store.JoinToken { t.RevokedAt = t0.Add(-time.Second); return t }, wantErr: store.ErrJoinTokenInvalid},
		{name: "used up", token: func(t store.JoinToken) store.JoinToken { t.Uses = 3; return t }, wantErr: store.ErrJoinTokenInvalid},
		{name: "zero max uses", token: func(t store.JoinToken) store.JoinToken { t.MaxUses = 0; return t }, wantErr: store.ErrJoinTokenInvalid},
	}
	var invalidMessages []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			tok := tt.token(newJoinToken("tok", 3))
			mustCreateJoinToken(t, s, tok)
			hash := tt.hash
			if hash == nil {
				hash = tok.Hash
			}
			var built *store.JoinToken
			agent := store.Agent{ID: "agent-1", Hostname: "web-1", State: store.AgentDisconnected}
			got, err := s.RegisterAgent(context.Background(), hash, t0, func(jt store.JoinToken) (store.Agent, error) {
				built = &jt
				return agent, nil
			})

			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("RegisterAgent = %v, want %v", err, tt.wantErr)
				}
				invalidMessages = append(invalidMessages, err.Error())
				if built != nil {
					t.Error("build was called for an invalid token")
				}
				assertEqual(t, mustGetJoinToken(t, s, tok.ID), tok)
				if _, err := s.GetAgent(context.Background(), agent.ID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("GetAgent after a refused registration = %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("RegisterAgent: %v", err)
			}
			if built == nil {
				t.Fatal("build was not called")
			}
			assertEqual(t, *built, tok) // as stored, before this use
			want := agent
			want.JoinTokenID = tok.ID
			assertEqual(t, got, want)
			assertEqual(t, mustGetAgent(t, s, agent.ID), want)
			if uses := mustGetJoinToken(t, s, tok.ID).Uses; uses != tok.Uses+1 {
				t.Errorf("uses = %d, want %d", uses, tok.Uses+1)
			}
		})
	}
	// The error must not tell an unknown token from a spent one.
	for _, msg := range invalidMessages[1:] {
		if msg != invalidMessages[0] {
			t.Errorf("invalid-token errors differ: %q vs %q", msg, invalidMessages[0])
		}
	}
}

func same(t store.JoinToken) store.JoinToken { return t }

func testRegisterAgentBuildErrorWritesNothing(t *testing.T, open Opener) {
	s := open(t)
	tok := newJoinToken("tok", 1)
	mustCreateJoinToken(t, s, tok)
	buildErr := errors.New("csr rejected")
	_, err := s.RegisterAgent(context.Background(), tok.Hash, t0, func(store.JoinToken) (store.Agent, error) {
		return store.Agent{ID: "agent-1"}, buildErr
	})
	if err != buildErr {
		t.Fatalf("RegisterAgent = %v, want build's error unchanged", err)
	}
	assertEqual(t, mustGetJoinToken(t, s, tok.ID), tok)
	if _, err := s.GetAgent(context.Background(), "agent-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAgent = %v, want ErrNotFound", err)
	}
}

func testRegisterAgentDuplicateID(t *testing.T, open Opener) {
	s := open(t)
	tok := newJoinToken("tok", 5)
	mustCreateJoinToken(t, s, tok)
	register := func() error {
		_, err := s.RegisterAgent(context.Background(), tok.Hash, t0, func(store.JoinToken) (store.Agent, error) {
			return store.Agent{ID: "agent-1"}, nil
		})
		return err
	}
	if err := register(); err != nil {
		t.Fatal(err)
	}
	if err := register(); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second RegisterAgent = %v, want ErrConflict", err)
	}
	if uses := mustGetJoinToken(t, s, tok.ID).Uses; uses != 1 {
		t.Errorf("uses = %d, want 1: the conflicting registration must not spend a use", uses)
	}
}

// testRegisterAgentLastUseRace races registrations for the last use of a
// token through one store.
func testRegisterAgentLastUseRace(t *testing.T, open Opener) {
	RaceLastUse(t, open(t))
}

// RaceLastUse races 16 registrations for the last use of one join token
// through stores, which must share one database (several stores on one
// database stand for several processes), and checks that exactly one wins.
func RaceLastUse(t *testing.T, stores ...store.Store) {
	t.Helper()
	tok := newJoinToken("tok", 1)
	mustCreateJoinToken(t, stores[0], tok)

	const racers = 16
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			s := stores[i%len(stores)]
			_, errs[i] = s.RegisterAgent(context.Background(), tok.Hash, t0, func(store.JoinToken) (store.Agent, error) {
				return store.Agent{ID: fmt.Sprintf("agent-%d", i)}, nil
			})
		})
	}
	close(start)
	wg.Wait()

	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrJoinTokenInvalid):
			t.Errorf("racer %d: %v, want success or ErrJoinTokenInvalid", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d registrations succeeded, want exactly 1", won)
	}
	if uses := mustGetJoinToken(t, stores[0], tok.ID).Uses; uses != 1 {
		t.Errorf("uses = %d, want 1", uses)
	}
	if agents, err := stores[0].ListAgents(context.Background()); err != nil || len(agents) != 1 {
		t.Errorf("ListAgents = %d agents, err %v; want 1", len(agents), err)
	}
}

func testUpdateAgentStatuses(t *testing.T, open Opener) {
	registered := store.Agent{
		ID:            "agent-1",
		Hostname:      "web-1",
		Labels:        map[string]string{"env": "prod"},
		PinnedLabels:  map[string]string{"env": "prod"},
		Version:       "1.0.0",
		State:         store.AgentConnected,
		ConnectedAt:   t0,
		LastSeenAt:    t0,
		CertSerial:    "01",
		Hello:         []byte("hello"),
		LastHeartbeat: []byte("beat"),
	}
	tests := []struct {
		name   string
		update store.AgentStatus
		want   func(a store.Agent) store.Agent // from the registered agent
	}{
		{
			name: "nil maps and slices leave them unchanged; times and strings are written",
			update: store.AgentStatus{
				ID:             "agent-1",
				State:          store.AgentDisconnected,
				StateReason:    "stream closed",
				StateChangedAt: t0.Add(time.Minute),
				LastSeenAt:     t0.Add(time.Minute),
				// ConnectedAt, PeerAddress, Version, Hostname: zero, written as such.
			},
			want: func(a store.Agent) store.Agent {
				a.State = store.AgentDisconnected
				a.StateReason = "stream closed"
				a.StateChangedAt = t0.Add(time.Minute)
				a.ConnectedAt = time.Time{}
				a.LastSeenAt = t0.Add(time.Minute)
				a.Version, a.Hostname = "", ""
				return a
			},
		},
		{
			name: "non-nil maps and slices are written, empty included",
			update: store.AgentStatus{
				ID:            "agent-1",
				State:         store.AgentConnected,
				ConnectedAt:   t0,
				LastSeenAt:    t0,
				PeerAddress:   "10.0.0.1:1",
				Version:       "1.1.0",
				Hostname:      "web-1b",
				Labels:        map[string]string{},
				Hello:         []byte("hello v2"),
				LastHeartbeat: []byte{},
			},
			want: func(a store.Agent) store.Agent {
				a.ConnectedAt, a.LastSeenAt = t0, t0
				a.PeerAddress, a.Version, a.Hostname = "10.0.0.1:1", "1.1.0", "web-1b"
				a.Labels = map[string]string{}
				a.Hello = []byte("hello v2")
				a.LastHeartbeat = []byte{}
				return a
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			reg := mustRegisterAgent(t, s, registered)
			unknown := store.AgentStatus{ID: "unknown", State: store.AgentLost}
			if _, err := s.UpdateAgentStatuses(context.Background(), []store.AgentStatus{unknown, tt.update}); err != nil {
				t.Fatalf("UpdateAgentStatuses: %v", err)
			}
			assertUpdated(t, mustGetAgent(t, s, "agent-1"), tt.want(reg), reg.StatusSeq)
			if _, err := s.GetAgent(context.Background(), "unknown"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetAgent(unknown) = %v, want ErrNotFound: updates must not insert", err)
			}
		})
	}
}

// assertUpdated checks an agent after a status write: want, with a
// status_seq above before.
func assertUpdated(t *testing.T, got, want store.Agent, before int64) {
	t.Helper()
	if got.StatusSeq <= before {
		t.Errorf("status_seq after the update = %d, want above %d", got.StatusSeq, before)
	}
	want.StatusSeq = got.StatusSeq
	assertEqual(t, got, want)
}

func testUpdateAgentStatusesIsOneTransaction(t *testing.T, open Opener) {
	s := open(t)
	a := mustRegisterAgent(t, s, store.Agent{ID: "agent-1", State: store.AgentConnected})
	updates := []store.AgentStatus{
		{ID: "agent-1", State: store.AgentLost},
		{ID: "agent-1", LastSeenAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}, // not storable
	}
	if _, err := s.UpdateAgentStatuses(context.Background(), updates); err == nil {
		t.Fatal("UpdateAgentStatuses stored a time past 2262")
	}
	assertEqual(t, mustGetAgent(t, s, "agent-1"), a) // the first update was rolled back
}

func testUpdateAgentStatusesEmpty(t *testing.T, open Opener) {
	s := open(t)
	if _, err := s.UpdateAgentStatuses(context.Background(), nil); err != nil {
		t.Fatalf("UpdateAgentStatuses(nil) = %v", err)
	}
}

// A Register retried with the same key finds the agent it created, on a
// token that is used up by then; the same key cannot register a second
// agent with the token; a deregistered agent is not found, and its key may
// register again.
func testRegisteredWithKey(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	tok := newJoinToken("tok", 1)
	mustCreateJoinToken(t, s, tok)
	register := func(id, key string) error {
		_, err := s.RegisterAgent(ctx, tok.Hash, t0, func(store.JoinToken) (store.Agent, error) {
			return store.Agent{ID: id, Hostname: id, State: store.AgentDisconnected, PublicKeySHA256: key}, nil
		})
		return err
	}
	if err := register("a", "key-1"); err != nil {
		t.Fatal(err)
	}
	got, err := s.RegisteredWithKey(ctx, tok.Hash, "key-1", t0)
	if err != nil || got.ID != "a" || got.PublicKeySHA256 != "key-1" {
		t.Fatalf("RegisteredWithKey(key-1) on a used-up token = %+v, %v; want agent a", got, err)
	}
	for name, tc := range map[string]struct {
		hash []byte
		key  string
		want error
	}{
		"other key":     {tok.Hash, "key-2", store.ErrNotFound},
		"no key":        {tok.Hash, "", store.ErrNotFound},
		"unknown token": {hashOf("nope"), "key-1", store.ErrJoinTokenInvalid},
	} {
		if _, err := s.RegisteredWithKey(ctx, tc.hash, tc.key, t0); !errors.Is(err, tc.want) {
			t.Errorf("%s: RegisteredWithKey = %v, want %v", name, err, tc.want)
		}
	}
	if _, err := s.RegisteredWithKey(ctx, tok.Hash, "key-1", tok.ExpiresAt); !errors.Is(err, store.ErrJoinTokenInvalid) {
		t.Errorf("RegisteredWithKey on an expired token = %v, want ErrJoinTokenInvalid", err)
	}

	// A second agent with the same token and key: refused as a conflict,
	// and the token's use is not taken (it has none left anyway: give it
	// one more).
	tok2 := newJoinToken("tok2", 3)
	mustCreateJoinToken(t, s, tok2)
	register2 := func(id, key string) error {
		_, err := s.RegisterAgent(ctx, tok2.Hash, t0, func(store.JoinToken) (store.Agent, error) {
			return store.Agent{ID: id, Hostname: id, State: store.AgentDisconnected, PublicKeySHA256: key}, nil
		})
		return err
	}
	if err := register2("b", "key-1"); err != nil {
		t.Fatalf("the same key with another token: %v", err)
	}
	if err := register2("c", "key-1"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the same key and token twice = %v, want ErrConflict", err)
	}
	if got := mustGetJoinToken(t, s, tok2.ID).Uses; got != 1 {
		t.Errorf("uses = %d after the refused second registration, want 1", got)
	}
	if _, err := s.DeregisterAgent(ctx, "b", t0, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisteredWithKey(ctx, tok2.Hash, "key-1", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RegisteredWithKey after deregistration = %v, want ErrNotFound", err)
	}
	if err := register2("d", "key-1"); err != nil {
		t.Errorf("the key of a deregistered agent registering again: %v", err)
	}
	if _, err := s.RevokeJoinToken(ctx, tok2.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisteredWithKey(ctx, tok2.Hash, "key-1", t0); !errors.Is(err, store.ErrJoinTokenInvalid) {
		t.Errorf("RegisteredWithKey on a revoked token = %v, want ErrJoinTokenInvalid", err)
	}
}
