package docker

import (
	"regexp"
	"testing"

	"github.com/distribution/reference"
	"google.golang.org/protobuf/types/known/durationpb"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// referenceChars are the only characters an accepted image reference may
// hold: the reference grammar's (names, tags, digests, registry host and
// port, bracketed IPv6). Nothing that means something to a shell or to the
// engine's API paths.
var referenceChars = regexp.MustCompile(`^[A-Za-z0-9._:/@\[\]-]+$`)

// dockerContainerName is Docker's own grammar for container names, which
// every accepted name must follow.
var dockerContainerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// FuzzValidate feeds the docker executor's Validate the parameters a
// control plane could send: image references for pull and restart,
// container names and stop timeouts. It needs no Docker engine.
//
// Properties: nothing panics; a refusal is a *executor.Rejection; an
// accepted image parses, names a tag or digest, comes from an allowed
// registry and holds only reference characters; an accepted container name
// follows Docker's grammar; an accepted stop timeout is from 0 to the cap.
//
// The seed corpus is in testdata/fuzz/FuzzValidate.
func FuzzValidate(f *testing.F) {
	e, err := New(Config{AllowedRegistries: []string{"docker.io", "registry.example.com:5000"}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	f.Fuzz(func(t *testing.T, image, container string, stopSeconds int64, stopNanos int32) {
		pull := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: image}}}
		if accepted(t, e.Validate(pull)) {
			checkAcceptedImage(t, e, image)
		}

		stop := &durationpb.Duration{Seconds: stopSeconds, Nanos: stopNanos}
		restart := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{
			Container: container, Image: image, StopTimeout: stop,
		}}}
		if !accepted(t, e.Validate(restart)) {
			return
		}
		if !dockerContainerName.MatchString(container) {
			t.Fatalf("container name %q accepted", container)
		}
		if d := stop.AsDuration(); stop.CheckValid() != nil || d < 0 || d > maxStopTimeout {
			t.Fatalf("stop timeout %v accepted", stop)
		}
		if image != "" {
			checkAcceptedImage(t, e, image)
		}
	})
}

// accepted reports whether Validate accepted, and fails on an error that is
// not a rejection.
func accepted(t *testing.T, err error) bool {
	t.Helper()
	if err != nil && !executor.IsRejection(err) {
		t.Fatalf("Validate returned %T %v, want nil or a *executor.Rejection", err, err)
	}
	return err == nil
}

func checkAcceptedImage(t *testing.T, e *Executor, image string) {
	t.Helper()
	if !referenceChars.MatchString(image) {
		t.Fatalf("image %q accepted with characters outside the reference grammar", image)
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		t.Fatalf("image %q accepted but does not parse: %v", image, err)
	}
	_, tagged := named.(reference.Tagged)
	_, digested := named.(reference.Digested)
	if !tagged && !digested {
		t.Fatalf("image %q accepted without a tag or digest", image)
	}
	if _, ok := e.registries[imageRef{named: named}.domain()]; !ok {
		t.Fatalf("image %q accepted from registry %s, which is not allowed", image, reference.Domain(named))
	}
}
