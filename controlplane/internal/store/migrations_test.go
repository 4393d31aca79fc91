package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name         string
		fsys         fstest.MapFS
		wantVersions []int
		wantErr      string
	}{
		{"none", fstest.MapFS{}, nil, ""},
		{
			"sorted by version",
			fstest.MapFS{"0002_b.sql": file("B"), "0001_a.sql": file("A"), "0003_c.sql": file("C")},
			[]int{1, 2, 3}, "",
		},
		{"gap", fstest.MapFS{"0001_a.sql": file("A"), "0003_c.sql": file("C")}, nil, "version 3, want 2"},
		{"duplicate", fstest.MapFS{"0001_a.sql": file("A"), "0001_b.sql": file("B")}, nil, "version 1, want 2"},
		{"not starting at 1", fstest.MapFS{"0002_b.sql": file("B")}, nil, "version 2, want 1"},
		{"bad name", fstest.MapFS{"1_a.sql": file("A")}, nil, "name must match"},
		{"not sql", fstest.MapFS{"0001_a.txt": file("A")}, nil, "name must match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := LoadMigrations(tt.fsys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadMigrations = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.Version)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantVersions) {
				t.Errorf("versions = %v, want %v", got, tt.wantVersions)
			}
		})
	}
}

func TestPendingMigrations(t *testing.T) {
	ms := []Migration{{Version: 1, Name: "0001_a.sql"}, {Version: 2, Name: "0002_b.sql"}}
	tests := []struct {
		name        string
		current     int
		wantPending int
		wantErr     string
	}{
		{"new database", 0, 2, ""},
		{"one behind", 1, 1, ""},
		{"up to date", 2, 0, ""},
		{"newer", 3, 0, "database is at version 3, this binary knows up to version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pending, err := PendingMigrations(ms, tt.current)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("PendingMigrations = %v, want ErrSchemaTooNew containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) != tt.wantPending {
				t.Fatalf("%d pending, want %d", len(pending), tt.wantPending)
			}
			for i, m := range pending {
				if m.Version != tt.current+i+1 {
					t.Errorf("pending[%d] is version %d, want %d", i, m.Version, tt.current+i+1)
				}
			}
		})
	}
}
