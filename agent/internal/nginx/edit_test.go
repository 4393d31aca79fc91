package nginx

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestEditUpstream(t *testing.T) {
	const x = "10.0.0.1:80"
	tests := []struct {
		name        string
		src         string
		block       string
		down        bool
		want        string // the new file; "" means unchanged
		wantBlocks  []string
		wantAllDown []string
		wantErr     error // a sentinel, or errParse for any parse error
	}{{
		name:       "drain a plain server",
		src:        "upstream app {\n    server 10.0.0.1:80;\n    server 10.0.0.2:80;\n}\n",
		down:       true,
		want:       "upstream app {\n    server 10.0.0.1:80 down;\n    server 10.0.0.2:80;\n}\n",
		wantBlocks: []string{"app"},
	}, {
		name:       "drain keeps the other parameters",
		src:        "upstream app {\n  server 10.0.0.1:80 weight=5 max_fails=3 fail_timeout=30s;\n  server 10.0.0.2:80;\n}\n",
		down:       true,
		want:       "upstream app {\n  server 10.0.0.1:80 weight=5 max_fails=3 fail_timeout=30s down;\n  server 10.0.0.2:80;\n}\n",
		wantBlocks: []string{"app"},
	}, {
		name:       "drain a backup server",
		src:        "upstream app { server 10.0.0.2:80; server 10.0.0.1:80 backup; }",
		down:       true,
		want:       "upstream app { server 10.0.0.2:80; server 10.0.0.1:80 backup down; }",
		wantBlocks: []string{"app"},
	}, {
		name:       "drain an already drained server changes nothing",
		src:        "upstream app {\n    server 10.0.0.1:80 down weight=2;\n    server 10.0.0.2:80;\n}\n",
		down:       true,
		wantBlocks: []string{"app"},
	}, {
		name:       "undrain removes down between parameters",
		src:        "upstream app {\n    server 10.0.0.1:80 weight=5 down max_fails=3;\n}\n",
		want:       "upstream app {\n    server 10.0.0.1:80 weight=5 max_fails=3;\n}\n",
		wantBlocks: []string{"app"},
	}, {
		name:       "undrain removes a trailing down",
		src:        "upstream app {\n\tserver 10.0.0.1:80\tdown;\n}\n",
		want:       "upstream app {\n\tserver 10.0.0.1:80;\n}\n",
		wantBlocks: []string{"app"},
	}, {
		name:       "undrain removes a down on its own line",
		src:        "upstream app {\n    server 10.0.0.1:80\n        weight=2\n        down\n        max_fails=1;\n}\n",
		want:       "upstream app {\n    server 10.0.0.1:80\n        weight=2\n        max_fails=1;\n}\n",
		wantBlocks: []string{"app"},
	}, {
		name:       "undrain removes a quoted down",
		src:        "upstream app { server 10.0.0.1:80 \"down\"; }",
		want:       "upstream app { server 10.0.0.1:80; }",
		wantBlocks: []string{"app"},
	}, {
		name:       "undrain an active server changes nothing",
		src:        "upstream app { server 10.0.0.1:80 weight=1; }",
		wantBlocks: []string{"app"},
	}, {
		name:       "undrain keeps CRLF line endings",
		src:        "upstream app {\r\n    server 10.0.0.1:80 down;\r\n}\r\n",
		want:       "upstream app {\r\n    server 10.0.0.1:80;\r\n}\r\n",
		wantBlocks: []string{"app"},
	}, {
		name: "comments are left alone",
		src: "# server 10.0.0.1:80 down;\nupstream app { # server 10.0.0.1:80;\n" +
			"    server 10.0.0.1:80; # primary; do not { remove }\n    # server 10.0.0.1:80 down;\n    server 10.0.0.2:80;\n}\n",
		down: true,
		want: "# server 10.0.0.1:80 down;\nupstream app { # server 10.0.0.1:80;\n" +
			"    server 10.0.0.1:80 down; # primary; do not { remove }\n    # server 10.0.0.1:80 down;\n    server 10.0.0.2:80;\n}\n",
		wantBlocks: []string{"app"},
	}, {
		name:    "a server only in a comment is not found",
		src:     "upstream app {\n    # server 10.0.0.1:80;\n    server 10.0.0.2:80;\n}\n",
		down:    true,
		wantErr: errServerNotFound,
	}, {
		name:    "a server in another kind of block is not an upstream server",
		src:     "map $host $pool {\n    server 10.0.0.1:80;\n}\nserver {\n    listen 80;\n    server_name 10.0.0.1:80;\n}\nupstream app { server 10.0.0.2:80; }\n",
		down:    true,
		wantErr: errServerNotFound,
	}, {
		name:       "similar addresses do not match",
		src:        "upstream app {\n    server 10.0.0.1:8080;\n    server 10.0.0.10:80;\n    server 10.0.0.1:80;\n}\n",
		down:       true,
		want:       "upstream app {\n    server 10.0.0.1:8080;\n    server 10.0.0.10:80;\n    server 10.0.0.1:80 down;\n}\n",
		wantBlocks: []string{"app"},
	}, {
		name:       "several servers on one line",
		src:        "upstream app { server 10.0.0.2:80; server 10.0.0.1:80; server 10.0.0.3:80; }\n",
		down:       true,
		want:       "upstream app { server 10.0.0.2:80; server 10.0.0.1:80 down; server 10.0.0.3:80; }\n",
		wantBlocks: []string{"app"},
	}, {
		name:       "every upstream block that lists the server",
		src:        "upstream web { server 10.0.0.1:80; server 10.0.0.2:80; }\nupstream ws { server 10.0.0.1:80 backup; }\nupstream api { server 10.0.0.9:80; }\n",
		down:       true,
		want:       "upstream web { server 10.0.0.1:80 down; server 10.0.0.2:80; }\nupstream ws { server 10.0.0.1:80 backup down; }\nupstream api { server 10.0.0.9:80; }\n",
		wantBlocks: []string{"web", "ws"}, wantAllDown: []string{"ws"},
	}, {
		name:       "only the configured block",
		src:        "upstream web { server 10.0.0.1:80; server 10.0.0.2:80; }\nupstream ws { server 10.0.0.1:80; }\n",
		block:      "ws",
		down:       true,
		want:       "upstream web { server 10.0.0.1:80; server 10.0.0.2:80; }\nupstream ws { server 10.0.0.1:80 down; }\n",
		wantBlocks: []string{"ws"}, wantAllDown: []string{"ws"},
	}, {
		name:    "the configured block is missing",
		src:     "upstream web { server 10.0.0.1:80; }\n",
		block:   "ws",
		down:    true,
		wantErr: errBlockNotFound,
	}, {
		name:    "the configured block lacks the server",
		src:     "upstream web { server 10.0.0.1:80; }\nupstream ws { server 10.0.0.2:80; }\n",
		block:   "ws",
		down:    true,
		wantErr: errServerNotFound,
	}, {
		name:        "draining the last active server",
		src:         "upstream app {\n    server 10.0.0.1:80;\n    server 10.0.0.2:80 down;\n}\n",
		down:        true,
		want:        "upstream app {\n    server 10.0.0.1:80 down;\n    server 10.0.0.2:80 down;\n}\n",
		wantBlocks:  []string{"app"},
		wantAllDown: []string{"app"},
	}, {
		name:       "other upstream directives and an upstream called server",
		src:        "upstream server {\n    zone server 64k;\n    least_conn;\n    keepalive 16;\n    server 10.0.0.1:80 max_conns=100;\n    server 10.0.0.2:80;\n}\n",
		down:       true,
		want:       "upstream server {\n    zone server 64k;\n    least_conn;\n    keepalive 16;\n    server 10.0.0.1:80 max_conns=100 down;\n    server 10.0.0.2:80;\n}\n",
		wantBlocks: []string{"server"},
	}, {
		name: "braces, semicolons and hashes inside quotes, escapes and variables",
		src: "server {\n    location / {\n        return 200 \"# { } ; upstream x { server 10.0.0.1:80; }\";\n" +
			"        add_header X-A ${host}a;\n        add_header X-B a\\;b;\n    }\n}\nupstream app { server 10.0.0.1:80; server 10.0.0.2:80; }\n",
		down: true,
		want: "server {\n    location / {\n        return 200 \"# { } ; upstream x { server 10.0.0.1:80; }\";\n" +
			"        add_header X-A ${host}a;\n        add_header X-B a\\;b;\n    }\n}\nupstream app { server 10.0.0.1:80 down; server 10.0.0.2:80; }\n",
		wantBlocks: []string{"app"},
	}, {
		name:        "a fragment of bare server directives",
		src:         "server 10.0.0.1:80;\nserver 10.0.0.2:80 down;\n",
		down:        true,
		want:        "server 10.0.0.1:80 down;\nserver 10.0.0.2:80 down;\n",
		wantBlocks:  []string{""},
		wantAllDown: []string{""},
	}, {
		name:    "an unclosed block is refused",
		src:     "upstream app {\n    server 10.0.0.1:80;\n",
		down:    true,
		wantErr: errParse,
	}, {
		name:    "a missing semicolon is refused",
		src:     "upstream app {\n    server 10.0.0.1:80\n}\n",
		down:    true,
		wantErr: errParse,
	}, {
		name:    "an unterminated quote is refused",
		src:     "upstream app { server \"10.0.0.1:80; }\n",
		down:    true,
		wantErr: errParse,
	}, {
		name:    "a stray closing brace is refused",
		src:     "upstream app { server 10.0.0.1:80; }\n}\n",
		down:    true,
		wantErr: errParse,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := []byte(tt.src)
			got, err := editUpstream(src, tt.block, x, tt.down)
			if !bytes.Equal(src, []byte(tt.src)) {
				t.Fatal("editUpstream modified its input")
			}
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errParse && !errors.Is(err, tt.wantErr)) ||
					(tt.wantErr == errParse && (errors.Is(err, errServerNotFound) || errors.Is(err, errBlockNotFound))) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("editUpstream: %v", err)
			}
			want := tt.want
			if want == "" {
				want = tt.src
			}
			if string(got.content) != want {
				t.Errorf("content:\n%s\nwant:\n%s", got.content, want)
			}
			if got.changed != (tt.want != "") {
				t.Errorf("changed = %v, want %v", got.changed, tt.want != "")
			}
			if !slices.Equal(got.blocks, tt.wantBlocks) {
				t.Errorf("blocks = %q, want %q", got.blocks, tt.wantBlocks)
			}
			if !slices.Equal(got.allDown, tt.wantAllDown) {
				t.Errorf("allDown = %q, want %q", got.allDown, tt.wantAllDown)
			}
			assertState(t, got.content, tt.block, x, tt.down)
		})
	}
}

// errParse stands for any parse error in TestEditUpstream.
var errParse = errors.New("parse error")

// TestEditUpstreamRoundTrip checks that undraining a server that drain
// marked gives back the original file, byte for byte.
func TestEditUpstreamRoundTrip(t *testing.T) {
	srcs := []string{
		"upstream app {\n    server 10.0.0.1:80;\n    server 10.0.0.2:80;\n}\n",
		"upstream app {\n    server 10.0.0.1:80 weight=3 max_fails=2; # main\n}\n",
		"upstream app { server 10.0.0.2:80; server 10.0.0.1:80 backup; }",
		"upstream a { server 10.0.0.1:80; }\nupstream b {\n\tserver 10.0.0.1:80\n\t\tweight=2;\n}\n",
		"server 10.0.0.1:80;\n",
	}
	for _, src := range srcs {
		drained, err := editUpstream([]byte(src), "", "10.0.0.1:80", true)
		if err != nil || !drained.changed {
			t.Fatalf("drain %q: changed=%v err=%v", src, drained.changed, err)
		}
		undrained, err := editUpstream(drained.content, "", "10.0.0.1:80", false)
		if err != nil || !undrained.changed {
			t.Fatalf("undrain %q: changed=%v err=%v", drained.content, undrained.changed, err)
		}
		if string(undrained.content) != src {
			t.Errorf("round trip of %q gave %q", src, undrained.content)
		}
	}
}

// FuzzEditUpstream checks that editing never panics, and that a successful
// edit leaves a file that parses, with the server in the requested state
// and every other server as it was.
func FuzzEditUpstream(f *testing.F) {
	f.Add("upstream app { server 10.0.0.1:80 weight=2; server 10.0.0.2:80 down; }", true)
	f.Add("upstream app {\n server 10.0.0.1:80 down # c\n ;\n}\n", false)
	f.Add("server 10.0.0.1:80 \"down\";", false)
	f.Add("http { upstream a { server 10.0.0.1:80\\;x; } }", true)
	f.Fuzz(func(t *testing.T, src string, down bool) {
		const server = "10.0.0.1:80"
		got, err := editUpstream([]byte(src), "", server, down)
		if err != nil {
			return
		}
		assertState(t, got.content, "", server, down)
		before, _ := parseUpstreams([]byte(src))
		after, _ := parseUpstreams(got.content)
		if len(before) != len(after) {
			t.Fatalf("blocks went from %d to %d", len(before), len(after))
		}
		for i := range before {
			assertOthersUnchanged(t, before[i], after[i], server)
		}
	})
}

// assertState checks that every directive of server in the edited blocks
// is down (or up).
func assertState(t *testing.T, content []byte, block, server string, down bool) {
	t.Helper()
	blocks, err := parseUpstreams(content)
	if err != nil {
		t.Fatalf("the edited file does not parse: %v\n%s", err, content)
	}
	for _, b := range blocks {
		if block != "" && b.name != block {
			continue
		}
		for _, d := range b.servers {
			if d.address.value == server && d.down() != down {
				t.Fatalf("server %s in block %q: down=%v, want %v\n%s", server, b.name, d.down(), down, content)
			}
		}
	}
}

func assertOthersUnchanged(t *testing.T, before, after upstreamBlock, server string) {
	t.Helper()
	if before.name != after.name || len(before.servers) != len(after.servers) {
		t.Fatalf("block %q became %q with %d servers instead of %d", before.name, after.name, len(after.servers), len(before.servers))
	}
	for j, d := range before.servers {
		a := after.servers[j]
		if d.address.value != a.address.value {
			t.Fatalf("server %q became %q", d.address.value, a.address.value)
		}
		if d.address.value != server && d.down() != a.down() {
			t.Fatalf("server %q changed state", d.address.value)
		}
	}
}
