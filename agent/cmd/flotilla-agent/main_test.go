package main

import "testing"

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"version", []string{"-version"}, exitOK},
		{"help", []string{"-h"}, exitOK},
		{"unknown flag", []string{"-bogus"}, exitUsage},
		{"invalid config", []string{"-control-plane.address", "no-port"}, exitUsage},
		{"bad log format", []string{"-control-plane.address", "cp:7443", "-log.format", "xml"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(tt.args); got != tt.want {
				t.Errorf("run(%q) = %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}
