package validate

import (
	"errors"
	"fmt"

	"github.com/distribution/reference"
)

// MaxImageLength bounds an image reference.
const MaxImageLength = 512

// Image checks an image reference against the grammar of
// github.com/distribution/reference and requires a tag or a digest: a
// deploy names exactly what it runs, never an implicit "latest". It
// returns the reference in its normalized form (docker.io/library/… for
// Docker Hub names).
func Image(ref string) (reference.Named, error) {
	switch {
	case ref == "":
		return nil, errors.New("is required (name:tag or name@sha256:digest)")
	case len(ref) > MaxImageLength:
		return nil, fmt.Errorf("is %d characters, at most %d allowed", len(ref), MaxImageLength)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("%s is not an image reference (name:tag or name@sha256:digest): %v", quote(ref), err)
	}
	_, tagged := named.(reference.Tagged)
	_, digested := named.(reference.Digested)
	if !tagged && !digested {
		return nil, fmt.Errorf("%s names no tag or digest; name the exact image to deploy (e.g. %s:1.2.3)", quote(ref), quote(ref))
	}
	return named, nil
}
