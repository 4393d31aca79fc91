package nginx

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{
			Binary:     "nginx",
			ConfigFile: "/etc/nginx/nginx.conf",
			Upstreams: map[string]Upstream{
				"app":        {File: "/etc/nginx/conf.d/app-upstream.conf"},
				"api_v2.int": {File: "/etc/nginx/conf.d/api.conf", Block: "api-v2"},
			},
		}
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // substrings of the error; none for a valid config
	}{
		{name: "valid", modify: func(*Config) {}},
		{name: "empty section", modify: func(c *Config) { *c = Config{} }},
		{name: "absolute binary", modify: func(c *Config) { c.Binary = "/opt/nginx/sbin/nginx" }},
		{name: "relative binary path", modify: func(c *Config) { c.Binary = "sbin/nginx" },
			want: []string{"nginx.binary: "}},
		{name: "relative config file", modify: func(c *Config) { c.ConfigFile = "nginx.conf" },
			want: []string{"nginx.config_file: must be an absolute path"}},
		{name: "relative upstream file", modify: func(c *Config) { c.Upstreams["app"] = Upstream{File: "conf.d/app.conf"} },
			want: []string{"nginx.upstreams.app.file: must be an absolute path"}},
		{name: "missing upstream file", modify: func(c *Config) { c.Upstreams["app"] = Upstream{} },
			want: []string{"nginx.upstreams.app.file: is required"}},
		{name: "bad block name", modify: func(c *Config) { c.Upstreams["app"] = Upstream{File: "/a.conf", Block: "a b"} },
			want: []string{"nginx.upstreams.app.block: "}},
		{name: "name with a blank", modify: func(c *Config) { c.Upstreams["my app"] = Upstream{File: "/a.conf"} },
			want: []string{`nginx.upstreams: key "my app" is not an upstream name`}},
		{name: "name too long", modify: func(c *Config) { c.Upstreams[strings.Repeat("a", 65)] = Upstream{File: "/a.conf"} },
			want: []string{"nginx.upstreams: key "}},
		{name: "every problem at once", modify: func(c *Config) {
			c.ConfigFile = "x"
			c.Upstreams["app"] = Upstream{File: "y"}
		}, want: []string{"nginx.config_file", "nginx.upstreams.app.file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.modify(&cfg)
			err := cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", cfg)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNewBinary(t *testing.T) {
	upstreams := map[string]Upstream{"app": {File: "/nonexistent/app.conf"}}
	if _, err := New(Config{Binary: "flotilla-no-such-nginx", Upstreams: upstreams}, nil); err == nil ||
		!strings.Contains(err.Error(), "nginx.binary") {
		t.Errorf("New with a missing binary: error = %v, want one naming nginx.binary", err)
	}
	// Without upstreams nginx is never run, so its absence is no error.
	if _, err := New(Config{Binary: "flotilla-no-such-nginx"}, nil); err != nil {
		t.Errorf("New without upstreams: %v", err)
	}
	if _, err := New(Config{ConfigFile: "relative.conf"}, nil); err == nil {
		t.Error("New accepted an invalid config")
	}
}
