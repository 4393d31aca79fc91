package docker

import (
	"maps"
	"regexp"
	"slices"
	"testing"
)

// TestNameFiltersMatchWholeNames checks the patterns of the engine's name
// filter the way the engine applies them: as regular expressions, to the
// name with and without its leading slash.
func TestNameFiltersMatchWholeNames(t *testing.T) {
	e := newTestExecutor(t, nil, func(c *Config) { c.ManagedContainers = []string{"web", "api.v2"} })
	var patterns []*regexp.Regexp
	for p := range e.nameFilters()["name"] {
		patterns = append(patterns, regexp.MustCompile(p))
	}
	matches := func(name string) bool {
		return slices.ContainsFunc(patterns, func(p *regexp.Regexp) bool { return p.MatchString(name) })
	}
	for _, name := range []string{"/web", "web", "/api.v2", "api.v2"} {
		if !matches(name) {
			t.Errorf("%q is not matched", name)
		}
	}
	for _, name := range []string{"/web-2", "/old-web", "/web.flotilla-old", "/apiXv2", "/api.v2.flotilla-old", "/db"} {
		if matches(name) {
			t.Errorf("%q is matched", name)
		}
	}
}

// TestManagedContainersAsksOnlyForCandidates checks against the engine
// that the list asks for the labelled and the named containers, each
// once, and not for the others, and that the report still applies every
// rule of isManaged to what the engine returns.
func TestManagedContainersAsksOnlyForCandidates(t *testing.T) {
	fx := requireDocker(t)
	setup := newTestExecutor(t, fx, nil)
	pull(t, setup, fx.image("v1"))
	spec := func(labels map[string]string) appSpec {
		return appSpec{image: fx.image("v1"), labels: labels}
	}
	labelled := fx.createApp(t, "cand-label", appSpec{image: fx.image("v1"), managed: true})
	setAside := fx.createApp(t, "cand-label"+oldSuffix, appSpec{image: fx.image("v1"), managed: true})
	named := fx.createApp(t, "cand.name", spec(nil))
	both := fx.createApp(t, "cand-both", appSpec{image: fx.image("v1"), managed: true})
	otherValue := fx.createApp(t, "cand-false", spec(map[string]string{"flotilla.managed": "false"}))
	longerName := fx.createApp(t, "cand.name-2", spec(nil))
	dotIsLiteral := fx.createApp(t, "candXname", spec(nil))
	e := newTestExecutor(t, fx, func(c *Config) { c.ManagedContainers = []string{named.name, both.name} })
	ctx := testContext(t)

	// Other tests' containers may be listed too: count only this test's.
	mine := map[string]string{}
	for _, a := range []app{labelled, setAside, named, both, otherValue, longerName, dotIsLiteral} {
		mine[a.id] = a.name
	}
	candidates, err := e.listCandidates(ctx)
	if err != nil {
		t.Fatalf("listCandidates: %v", err)
	}
	var got []string
	for _, c := range candidates {
		if name, ok := mine[c.ID]; ok {
			got = append(got, name)
		}
	}
	slices.Sort(got)
	want := []string{both.name, labelled.name, setAside.name, named.name}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the engine was asked for %q, want %q (each once)", got, want)
	}

	list, err := e.ManagedContainers(ctx)
	if err != nil {
		t.Fatalf("ManagedContainers: %v", err)
	}
	reported := map[string]string{}
	for _, c := range list {
		if name, ok := mine[c.GetContainerId()]; ok {
			reported[name] = c.GetName()
		}
	}
	wantReported := map[string]string{labelled.name: labelled.name, named.name: named.name, both.name: both.name}
	if !maps.Equal(reported, wantReported) {
		t.Errorf("reported %v, want %v", reported, wantReported)
	}
}
