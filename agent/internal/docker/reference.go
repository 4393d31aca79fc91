package docker

import (
	"strings"

	"github.com/distribution/reference"

	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/pkg/validate"
)

// imageRef is a validated image reference.
type imageRef struct {
	// raw is the reference as the command gave it.
	raw string
	// named is its normalized form (docker.io/library/… for Hub names).
	named reference.Named
}

// domain is the registry the reference pulls from ("docker.io" for Hub).
func (r imageRef) domain() string { return strings.ToLower(reference.Domain(r.named)) }

// parseImageRef checks ref with validate.Image: the reference grammar of
// github.com/distribution/reference with a tag or a digest, since a deploy
// names exactly what it runs, never an implicit "latest". field is the
// parameter's name in the command (pull.image, restart.image).
func parseImageRef(field, ref string) (imageRef, error) {
	named, err := validate.Image(ref)
	if err != nil {
		return imageRef{}, executor.Reject("%s: %v", field, err)
	}
	return imageRef{raw: ref, named: named}, nil
}

// checkRegistry applies the allowed-registries guard rail.
func (e *Executor) checkRegistry(r imageRef) error {
	d := r.domain()
	if _, ok := e.registries[d]; !ok {
		return executor.Reject("registry %s is not in docker.allowed_registries", d)
	}
	return nil
}

// validImage parses ref and applies the registry guard rail.
func (e *Executor) validImage(field, ref string) (imageRef, error) {
	r, err := parseImageRef(field, ref)
	if err != nil {
		return imageRef{}, err
	}
	return r, e.checkRegistry(r)
}

// sameRepository reports whether the repo digest s ("name@sha256:…", as
// ImageInspect lists them) belongs to the repository of r.
func sameRepository(s string, r imageRef) bool {
	n, err := reference.ParseNormalizedNamed(s)
	return err == nil && n.Name() == r.named.Name()
}
