package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"flotilla.dev/agent/internal/enroll"
	"flotilla.dev/agent/internal/fakecp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestNoSecretInLogs runs registration, the stream, a renewal and a
// reconnection, and checks that no log entry carries the join token or any
// form of either private key.
func TestNoSecretInLogs(t *testing.T) {
	ctx := waitCtx(t)
	r := startRenewing(t, nil)
	st, err := r.srv.NextStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next(t, ctx, st)
	secrets := map[string]string{"join token": fakecp.JoinToken}
	addKeySecrets(t, secrets, "registration key", filepath.Join(r.cfg.StateDir, "agent-1.key"))

	r.renew(t, ctx)
	addKeySecrets(t, secrets, "renewed key", filepath.Join(r.cfg.StateDir, "agent-2.key"))
	r.srv.DropConnections()
	r.log.waitLog(t, ctx, "disconnected")
	r.advance(t, ctx, 2, r.cfg.Backoff.Initial)
	if _, err := r.srv.NextStream(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.agent.stop(t, ctx); err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, r.log.logs, secrets)
}

// TestNoSecretInLogsOfARejectedToken checks the failure path: a join
// token from a file that the control plane refuses is not logged either.
func TestNoSecretInLogsOfARejectedToken(t *testing.T) {
	const token = "fjt_a-wrong-but-still-secret-token-value"
	srv := fakecp.Start(t)
	ctx := waitCtx(t)
	cfg := testConfig(t, srv, filepath.Join(t.TempDir(), "state"))
	cfg.JoinToken = ""
	cfg.JoinTokenFile = filepath.Join(t.TempDir(), "join.token")
	if err := os.WriteFile(cfg.JoinTokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := observe(t, &cfg)
	agent := runAgent(t, cfg)
	select {
	case err := <-agent.done:
		agent.done <- err
		if !errors.Is(err, enroll.ErrJoinTokenRejected) {
			t.Fatalf("Run returned %v, want the token rejected", err)
		}
		// main logs Run's error: it must not carry the token either.
		cfg.Logger.Error("agent failed", zap.Error(err))
	case <-ctx.Done():
		t.Fatal("Run did not fail")
	}
	assertNoSecret(t, log.logs, map[string]string{"join token": token})
}

// addKeySecrets adds every form in which the key in path could leak: its
// PEM lines, its DER in base64, and its private scalar in hex, decimal and
// base64.
func addKeySecrets(t *testing.T, secrets map[string]string, name, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s is not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*ecdsa.PrivateKey)
	d, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	secrets[name+" DER"] = base64.StdEncoding.EncodeToString(block.Bytes)
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("-----")) {
			secrets[name+" PEM line "+strconv.Itoa(i)] = string(line)
		}
	}
	secrets[name+" scalar hex"] = hex.EncodeToString(d)
	secrets[name+" scalar base64"] = base64.StdEncoding.EncodeToString(d)
	secrets[name+" scalar base64url"] = base64.RawURLEncoding.EncodeToString(d)
	secrets[name+" scalar decimal"] = new(big.Int).SetBytes(d).String()
}

// assertNoSecret checks every entry, message and fields, in the JSON form
// production logs have and in Go's %v form.
func assertNoSecret(t *testing.T, logs *observer.ObservedLogs, secrets map[string]string) {
	t.Helper()
	entries := logs.All()
	if len(entries) < 3 {
		t.Fatalf("only %d log entries: the test observes the wrong logger", len(entries))
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, e := range entries {
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err != nil {
			t.Fatal(err)
		}
		forms := []string{buf.String(), e.Message}
		for k, v := range e.ContextMap() {
			forms = append(forms, k, strings.ReplaceAll(strings.TrimSpace(fmt.Sprint(v)), "\n", ""))
		}
		buf.Free()
		for name, secret := range secrets {
			for _, s := range forms {
				if strings.Contains(s, secret) {
					t.Errorf("the %s is in the log entry %q", name, e.Message)
				}
			}
		}
	}
}
