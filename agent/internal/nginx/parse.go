package nginx

import "fmt"

// serverDirective is one "server address [parameters];" directive of an
// upstream block, as tokens of the source.
type serverDirective struct {
	address token
	params  []token
}

// down reports whether the directive has the "down" parameter.
func (d serverDirective) down() bool {
	for _, p := range d.params {
		if p.value == "down" {
			return true
		}
	}
	return false
}

// upstreamBlock is an "upstream name { ... }" block, or the top level of a
// fragment file (name "") that an upstream block includes.
type upstreamBlock struct {
	name    string
	servers []serverDirective
}

// frame is an open block while parsing.
type frame struct {
	upstream bool // servers directly inside are upstream servers
	block    upstreamBlock
}

// parseUpstreams returns the upstream blocks of an nginx configuration file
// with their server directives. Only directives directly inside an
// "upstream" block count (a "server { ... }" block elsewhere is not an
// upstream server), plus "server ...;" directives at the top level, which
// are only valid in a fragment included inside an upstream block.
func parseUpstreams(src []byte) ([]upstreamBlock, error) {
	tokens, err := lex(src)
	if err != nil {
		return nil, err
	}
	stack := []frame{{upstream: true}}
	var blocks []upstreamBlock
	var words []token
	for _, tok := range tokens {
		switch tok.kind {
		case tokWord:
			words = append(words, tok)
		case tokSemi:
			if len(words) == 0 {
				return nil, fmt.Errorf("line %d: unexpected \";\"", tok.line)
			}
			top := &stack[len(stack)-1]
			if top.upstream && words[0].value == "server" && len(words) >= 2 {
				top.block.servers = append(top.block.servers, serverDirective{address: words[1], params: words[2:]})
			}
			words = nil
		case tokLBrace:
			if len(words) == 0 {
				return nil, fmt.Errorf("line %d: unexpected \"{\"", tok.line)
			}
			f := frame{upstream: words[0].value == "upstream"}
			if f.upstream && len(words) >= 2 {
				f.block.name = words[1].value
			}
			stack = append(stack, f)
			words = nil
		case tokRBrace:
			if len(words) != 0 {
				return nil, fmt.Errorf("line %d: unexpected \"}\" (missing \";\" after %q?)", tok.line, words[0].value)
			}
			if len(stack) == 1 {
				return nil, fmt.Errorf("line %d: unexpected \"}\"", tok.line)
			}
			closed := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if closed.upstream {
				blocks = append(blocks, closed.block)
			}
		}
	}
	if len(words) != 0 || len(stack) != 1 {
		return nil, fmt.Errorf("unexpected end of file (unterminated directive or block)")
	}
	if len(stack[0].block.servers) > 0 {
		blocks = append(blocks, stack[0].block)
	}
	return blocks, nil
}
