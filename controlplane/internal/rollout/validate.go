package rollout

import (
	"net/url"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/limit"
	"flotilla.dev/pkg/validate"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/remediation"
	"flotilla.dev/controlplane/internal/selector"
)

// Defaults of a strategy's unset fields (see RolloutStrategy in rollout.proto).
const (
	DefaultMinHealthyTime  = 10 * time.Second
	DefaultHealthyDeadline = 5 * time.Minute
	DefaultOfflineWait     = 5 * time.Minute
	// DefaultAddressLabel is the agent label that holds a host's address in
	// the load balancer's upstream.
	DefaultAddressLabel = "address"
)

// Input limits.
const (
	maxReason       = 1024
	maxHealthURL    = 2048
	maxBatchSize    = 100000
	maxDuration     = 24 * time.Hour
	maxMinHealthy   = time.Hour
	maxSelectorText = 1024
)

// maxServiceName bounds a service name.
const maxServiceName = 63

var serviceNameRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// invalid returns an InvalidArgument status naming the field.
func invalid(field, format string, args ...any) error {
	return fault.Invalid(field, format, args...)
}

// ValidateServiceName checks a service name; field names it in the error.
func ValidateServiceName(field, name string) error {
	switch {
	case name == "":
		return invalid(field, "required")
	case len(name) > maxServiceName:
		return invalid(field, "%d characters, at most %d allowed", len(name), maxServiceName)
	case !serviceNameRE.MatchString(name):
		return invalid(field, "%q is not a service name ([a-z0-9-], 1 to 63 characters)", name)
	}
	return nil
}

// ValidateService checks a service definition. Fields are named
// "service.<field>"; output-only fields (times, current image) are ignored.
func ValidateService(svc *flotillav1.Service) error {
	if svc == nil {
		return invalid("service", "required")
	}
	if err := ValidateServiceName("service.name", svc.GetName()); err != nil {
		return err
	}
	if err := validate.ContainerName(svc.GetContainer()); err != nil {
		return invalid("service.container", "%v", err)
	}
	if svc.GetSelector() == "" {
		return invalid("service.selector", "required: the label selector of the service's hosts (e.g. \"role=web,env=prod\")")
	}
	if err := validateSelector("service.selector", svc.GetSelector()); err != nil {
		return err
	}
	if u := svc.GetHealthUrl(); u != "" {
		if len(u) > maxHealthURL {
			return invalid("service.health_url", "longer than %d bytes", maxHealthURL)
		}
		parsed, err := url.Parse(u)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return invalid("service.health_url", "%s is not an http(s) URL", validate.Quote(u))
		}
	}
	if lb := svc.GetLoadBalancer(); lb != nil {
		if lb.GetSelector() == "" {
			return invalid("service.load_balancer.selector", "required: the label selector of the load-balancer agents (e.g. \"role=lb\")")
		}
		if err := validateSelector("service.load_balancer.selector", lb.GetSelector()); err != nil {
			return err
		}
		if err := validate.UpstreamName(lb.GetUpstream()); err != nil {
			return invalid("service.load_balancer.upstream", "%v", err)
		}
		if p := lb.GetServerPort(); p < 1 || p > 65535 {
			return invalid("service.load_balancer.server_port", "must be 1-65535, got %d", p)
		}
		if l := lb.GetAddressLabel(); l != "" {
			if err := validate.LabelKey(l); err != nil {
				return invalid("service.load_balancer.address_label", "%v", err)
			}
		}
		switch p := lb.GetAlternatePort(); {
		case p < 0 || p > 65535:
			return invalid("service.load_balancer.alternate_port", "must be 1-65535 when set, got %d", p)
		case p != 0 && p == lb.GetServerPort():
			return invalid("service.load_balancer.alternate_port", "%d is server_port too: the new container needs the other port", p)
		}
	}
	if p := svc.GetRemediation(); p != nil {
		if err := remediation.Validate("service.remediation", p); err != nil {
			return err
		}
	}
	if _, err := parseWindows("service", svc); err != nil {
		return err
	}
	if s := svc.GetDefaultStrategy(); s != nil {
		return ValidateStrategy("service.default_strategy", s)
	}
	return nil
}

// ValidateStartReason checks a start's reason, which an override of the
// deploy windows requires.
func ValidateStartReason(req *flotillav1.StartRolloutRequest) error {
	if err := validateText("reason", req.GetReason(), maxReason); err != nil {
		return err
	}
	if req.GetOverrideWindow() && strings.TrimSpace(req.GetReason()) == "" {
		return invalid("reason", "required with override_window: say why the service's deploy windows are overridden (it is kept with the rollout and audited)")
	}
	return nil
}

func validateSelector(field, text string) error {
	if len(text) > maxSelectorText {
		return invalid(field, "longer than %d bytes", maxSelectorText)
	}
	if _, err := selector.Parse(text); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

// ValidateStrategy checks a strategy; prefix names it in errors (e.g.
// "strategy"). A nil strategy is valid (all defaults).
func ValidateStrategy(prefix string, s *flotillav1.RolloutStrategy) error {
	if s == nil {
		return nil
	}
	switch b := s.GetBatch().(type) {
	case *flotillav1.RolloutStrategy_BatchSize:
		if b.BatchSize < 1 || b.BatchSize > maxBatchSize {
			return invalid(prefix+".batch_size", "must be 1-%d, got %d", maxBatchSize, b.BatchSize)
		}
	case *flotillav1.RolloutStrategy_BatchPercent:
		if b.BatchPercent < 1 || b.BatchPercent > 100 {
			return invalid(prefix+".batch_percent", "must be 1-100, got %d", b.BatchPercent)
		}
	}
	if c := s.GetCanary(); c < 0 || c > maxBatchSize {
		return invalid(prefix+".canary", "must be 0-%d, got %d", maxBatchSize, c)
	}
	// max_unavailable is a plain int32: 0 cannot be told from unset and
	// means "the batch size".
	if m := s.GetMaxUnavailable(); m < 0 || m > maxBatchSize {
		return invalid(prefix+".max_unavailable", "must be at least 1 when set, at most %d, got %d", maxBatchSize, m)
	}
	durations := []struct {
		field    string
		d        *durationpb.Duration
		min, max time.Duration
	}{
		{"pause_between_batches", s.GetPauseBetweenBatches(), 0, maxDuration},
		{"min_healthy_time", s.GetMinHealthyTime(), 0, maxMinHealthy},
		{"healthy_deadline", s.GetHealthyDeadline(), time.Nanosecond, maxDuration},
		{"offline_wait", s.GetOfflineWait(), time.Nanosecond, maxDuration},
	}
	for _, d := range durations {
		if d.d == nil {
			continue
		}
		v, err := validate.Duration(d.d)
		if err != nil {
			return invalid(prefix+"."+d.field, "%v", err)
		}
		if v < d.min || v > d.max {
			if d.min > 0 {
				return invalid(prefix+"."+d.field, "must be positive and at most %s, got %s", d.max, v)
			}
			return invalid(prefix+"."+d.field, "must be between 0s and %s, got %s", d.max, v)
		}
	}
	if minH, deadline := durationOr(s.GetMinHealthyTime(), DefaultMinHealthyTime), durationOr(s.GetHealthyDeadline(), DefaultHealthyDeadline); minH > deadline {
		return invalid(prefix+".min_healthy_time", "%s is longer than healthy_deadline %s: no host could pass its health gate", minH, deadline)
	}
	if sub, err := limit.Check(s.GetMaxFailures()); err != nil {
		return invalid(prefix+".max_failures"+sub, "%v", err)
	}
	if _, ok := flotillav1.OfflinePolicy_name[int32(s.GetOfflineHosts())]; !ok {
		return invalid(prefix+".offline_hosts", "%d is not an offline policy (SKIP, FAIL or WAIT)", s.GetOfflineHosts())
	}
	if err := validateSideBySide(prefix, s); err != nil {
		return err
	}
	if a := s.GetAnalysis(); a != nil {
		return validateAnalysis(prefix+".analysis", a)
	}
	return nil
}

// validateSideBySide checks blue_green and surge. A blue-green rollout is
// one batch that switches every host at once: the fields that shape
// batches would be ignored, so they are refused.
func validateSideBySide(prefix string, s *flotillav1.RolloutStrategy) error {
	bg := s.GetBlueGreen()
	if bg == nil {
		return nil
	}
	if s.GetSurge() {
		return invalid(prefix+".surge", "set blue_green or surge, not both: blue_green already starts every new container beside the live one")
	}
	if kp := bg.GetKeepPrevious(); kp != nil {
		v, err := validate.Duration(kp)
		if err != nil {
			return invalid(prefix+".blue_green.keep_previous", "%v", err)
		}
		if v < 0 || v > maxDuration {
			return invalid(prefix+".blue_green.keep_previous", "must be between 0s and %s, got %s", maxDuration, v)
		}
	}
	switch {
	case s.GetCanary() != 0:
		return invalid(prefix+".canary", "must be 0 with blue_green: every host switches at once (got %d)", s.GetCanary())
	case s.GetBatch() != nil:
		return invalid(prefix+".batch_size", "must be unset with blue_green (and batch_percent too): every host switches at once")
	case s.GetPauseBetweenBatches().AsDuration() != 0:
		return invalid(prefix+".pause_between_batches", "must be unset with blue_green: there is one batch")
	}
	return nil
}

func durationOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

// withDefaults returns a copy of s (nil: all defaults) with every unset
// field given its default, so that a stored rollout shows what it used.
// max_unavailable stays 0 when unset: it depends on each batch's size.
func withDefaults(s *flotillav1.RolloutStrategy) *flotillav1.RolloutStrategy {
	out := &flotillav1.RolloutStrategy{}
	if s != nil {
		out = proto.Clone(s).(*flotillav1.RolloutStrategy)
	}
	if out.GetBatch() == nil {
		out.Batch = &flotillav1.RolloutStrategy_BatchSize{BatchSize: 1}
	}
	if out.MinHealthyTime == nil {
		out.MinHealthyTime = durationpb.New(DefaultMinHealthyTime)
	}
	if out.HealthyDeadline == nil {
		out.HealthyDeadline = durationpb.New(DefaultHealthyDeadline)
	}
	if out.PauseBetweenBatches == nil {
		out.PauseBetweenBatches = durationpb.New(0)
	}
	if out.MaxFailures == nil || out.MaxFailures.GetKind() == nil {
		out.MaxFailures = &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: 1}}
	}
	if out.OfflineHosts == flotillav1.OfflinePolicy_OFFLINE_POLICY_UNSPECIFIED {
		out.OfflineHosts = flotillav1.OfflinePolicy_OFFLINE_POLICY_SKIP
	}
	if out.OfflineWait == nil {
		out.OfflineWait = durationpb.New(DefaultOfflineWait)
	}
	if out.Analysis != nil {
		analysisDefaults(out.Analysis)
	}
	if out.BlueGreen != nil {
		blueGreenDefaults(out.BlueGreen)
	}
	return out
}

// ValidateImage checks an image reference: the distribution reference
// grammar with a tag or a digest (the exact image to deploy).
func ValidateImage(field, image string) error {
	if _, err := validate.Image(image); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

// validateText checks a free-text field such as a reason.
func validateText(field, s string, maxLen int) error {
	if err := validate.Text(s, maxLen); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}
