package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// ErrNoData is returned by a Querier when the query returned no sample (a
// missing series) or only NaN or infinite ones.
var ErrNoData = errors.New("no data")

// Worst chooses which sample of a vector counts.
type Worst int

// The choices of Worst.
const (
	// Highest takes the highest sample (a limit not to exceed).
	Highest Worst = iota
	// Lowest takes the lowest sample (a floor not to fall below).
	Lowest
)

// Querier runs one PromQL instant query at a time and returns one number.
type Querier interface {
	// Query evaluates promql at at. A vector's worst sample counts; no
	// sample, or only NaN ones, is ErrNoData; any other error means
	// Prometheus could not answer.
	Query(ctx context.Context, promql string, at time.Time, worst Worst) (float64, error)
}

// Prometheus queries a Prometheus server's HTTP API.
type Prometheus struct {
	api promv1.API
}

// NewPrometheus returns a Querier of the Prometheus server at address (its
// base URL, e.g. "http://prometheus:9090"). client may be nil
// (http.DefaultClient's transport).
func NewPrometheus(address string, client *http.Client) (*Prometheus, error) {
	cfg := api.Config{Address: address}
	if client != nil {
		cfg.Client = client
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", address, err)
	}
	return &Prometheus{api: promv1.NewAPI(c)}, nil
}

// Query implements Querier.
func (p *Prometheus) Query(ctx context.Context, promql string, at time.Time, worst Worst) (float64, error) {
	v, _, _, err := p.api.Query(ctx, promql, at)
	if err != nil {
		return 0, err
	}
	return Pick(v, worst)
}

// Pick returns the worst finite sample of a query's result.
func Pick(v model.Value, worst Worst) (float64, error) {
	var samples []float64
	switch r := v.(type) {
	case *model.Scalar:
		samples = append(samples, float64(r.Value))
	case model.Vector:
		for _, s := range r {
			samples = append(samples, float64(s.Value))
		}
	case nil:
	default:
		return 0, fmt.Errorf("the query returns a %s; it must return a scalar or an instant vector", v.Type())
	}
	found := false
	var out float64
	for _, s := range samples {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			continue
		}
		if !found || (worst == Highest && s > out) || (worst == Lowest && s < out) {
			out, found = s, true
		}
	}
	if !found {
		if len(samples) > 0 {
			return 0, fmt.Errorf("%w: %d samples, none a finite number (NaN: a division by zero, no requests?)", ErrNoData, len(samples))
		}
		return 0, fmt.Errorf("%w: no series matched", ErrNoData)
	}
	return out, nil
}
