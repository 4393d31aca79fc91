package validate

import (
	"errors"
	"fmt"
	"strings"

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
		return nil, fmt.Errorf("%s is not an image reference (name:tag or name@sha256:digest)%s", quote(ref), imageProblem(ref))
	}
	_, tagged := named.(reference.Tagged)
	_, digested := named.(reference.Digested)
	if !tagged && !digested {
		return nil, fmt.Errorf("%s names no tag or digest; name the exact image to deploy (e.g. %s:1.2.3)", quote(ref), quote(ref))
	}
	return named, nil
}

// imageProblem says in the caller's terms what is wrong with a reference
// the parser refused, where that is easy to tell ("" otherwise); the
// parser's own texts ("invalid reference format: …") are for programmers.
func imageProblem(ref string) string {
	name := ref
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	switch {
	case strings.IndexFunc(ref, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return ": spaces and control characters are not allowed"
	case strings.ToLower(name) != name:
		return ": the repository name must be lower case"
	case strings.Contains(ref, "@") && !strings.Contains(ref, "@sha256:"):
		return ": a digest is sha256: and 64 hexadecimal digits"
	}
	return ""
}
