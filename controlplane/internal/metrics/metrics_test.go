package metrics

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestConstructors registers one metric of each kind, records one value
// in it and checks what a scrape reports: name, help, type, label names
// and histogram buckets.
func TestConstructors(t *testing.T) {
	buckets := []float64{1, 5}
	tests := []struct {
		name        string
		metric      prometheus.Collector
		record      func()
		wantType    string
		wantLabels  []string
		wantBuckets int
	}{
		{name: "counter", wantType: "COUNTER"},
		{name: "counter_vec", wantType: "COUNTER", wantLabels: []string{"a", "b"}},
		{name: "gauge", wantType: "GAUGE"},
		{name: "gauge_vec", wantType: "GAUGE", wantLabels: []string{"a"}},
		{name: "histogram", wantType: "HISTOGRAM", wantBuckets: len(buckets)},
		{name: "histogram_vec", wantType: "HISTOGRAM", wantLabels: []string{"a"}, wantBuckets: len(buckets)},
	}
	c, cv := Counter("counter", "help counter"), CounterVec("counter_vec", "help counter_vec", "a", "b")
	g, gv := Gauge("gauge", "help gauge"), GaugeVec("gauge_vec", "help gauge_vec", "a")
	h, hv := Histogram("histogram", "help histogram", buckets), HistogramVec("histogram_vec", "help histogram_vec", buckets, "a")
	tests[0].metric, tests[0].record = c, func() { c.Inc() }
	tests[1].metric, tests[1].record = cv, func() { cv.WithLabelValues("x", "y").Inc() }
	tests[2].metric, tests[2].record = g, func() { g.Set(1) }
	tests[3].metric, tests[3].record = gv, func() { gv.WithLabelValues("x").Set(1) }
	tests[4].metric, tests[4].record = h, func() { h.Observe(2) }
	tests[5].metric, tests[5].record = hv, func() { hv.WithLabelValues("x").Observe(2) }

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(tt.metric)
			tt.record()
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			if len(families) != 1 {
				t.Fatalf("%d metric families, want 1", len(families))
			}
			f := families[0]
			if f.GetName() != tt.name || f.GetHelp() != "help "+tt.name || f.GetType().String() != tt.wantType {
				t.Errorf("got %s %q %v, want %s %q %v", f.GetName(), f.GetHelp(), f.GetType(), tt.name, "help "+tt.name, tt.wantType)
			}
			m := f.GetMetric()[0]
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			if !slices.Equal(labels, tt.wantLabels) {
				t.Errorf("labels = %v, want %v", labels, tt.wantLabels)
			}
			if n := len(m.GetHistogram().GetBucket()); n != tt.wantBuckets {
				t.Errorf("%d buckets, want %d", n, tt.wantBuckets)
			}
		})
	}
}
