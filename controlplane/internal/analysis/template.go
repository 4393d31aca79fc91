package analysis

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
)

// Values are what a query's template sees, unescaped; Render escapes them.
type Values struct {
	// Hosts are the agent IDs measured; the template's .Host is a regular
	// expression matching exactly these.
	Hosts []string
	// Service is the service's name.
	Service string
	// Image is the image measured (the new one; the previous one for the
	// old side of a comparison).
	Image string
	// PreviousImage is the image the hosts ran before the rollout.
	PreviousImage string
	// Interval is the range of the measurement.
	Interval time.Duration
}

// templateData is what the template executes with: every value escaped for
// a double-quoted PromQL string.
type templateData struct {
	Host, Service, Image, PreviousImage, Interval string
}

// Escape escapes s for a double-quoted PromQL string: backslashes, double
// quotes and control characters cannot end the string or change the query.
func Escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, r)
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// HostRegexp is a regular expression (RE2, as Prometheus' =~ uses it,
// anchored by Prometheus) matching exactly the given hosts; it matches
// nothing when there is none.
func HostRegexp(hosts []string) string {
	if len(hosts) == 0 {
		return "$^" // never matches: no host, no series
	}
	quoted := make([]string, len(hosts))
	for i, h := range hosts {
		quoted[i] = regexp.QuoteMeta(h)
	}
	return strings.Join(quoted, "|")
}

// Duration renders d as a PromQL duration ("1m", "1m30s"); at least 1s.
func Duration(d time.Duration) string {
	if d < time.Second {
		d = time.Second
	}
	return model.Duration(d.Truncate(time.Second)).String()
}

// Parse parses a query template; missing keys and unknown fields are errors.
func Parse(text string) (*template.Template, error) {
	return template.New("query").Option("missingkey=error").Parse(text)
}

// Check parses a query template and executes it with sample values, so
// that an unknown field (say {{.Hostname}}) is refused when the strategy
// is given rather than at the first measurement.
func Check(text string) error {
	_, err := Render(text, Values{Hosts: []string{"web-1"}, Service: "web", Image: "app:2", PreviousImage: "app:1", Interval: time.Minute})
	return err
}

// Render renders a query template with v, every value escaped.
func Render(text string, v Values) (string, error) {
	t, err := Parse(text)
	if err != nil {
		return "", err
	}
	data := templateData{
		Host: Escape(HostRegexp(v.Hosts)), Service: Escape(v.Service), Image: Escape(v.Image),
		PreviousImage: Escape(v.PreviousImage), Interval: Duration(v.Interval),
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	out := strings.TrimSpace(b.String())
	if out == "" {
		return "", errors.New("the template renders an empty query")
	}
	return out, nil
}
