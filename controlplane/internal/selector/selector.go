package selector

import (
	"fmt"
	"slices"
	"strings"

	"flotilla.dev/pkg/validate"
)

// Limits keep hostile selectors cheap to parse and evaluate.
const (
	MaxLength       = 4096
	MaxRequirements = 64
)

type operator int

const (
	opEquals operator = iota
	opNotEquals
	opIn
	opNotIn
	opExists
	opNotExists
)

type requirement struct {
	key    string
	op     operator
	values []string
}

// Selector is a parsed label selector. The zero value matches everything.
type Selector struct {
	reqs []requirement
	text string
}

// Everything returns a selector that matches every label set.
func Everything() Selector { return Selector{} }

// Empty reports whether the selector has no requirements.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// String returns the selector as it was parsed.
func (s Selector) String() string { return s.text }

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.reqs {
		v, ok := labels[r.key]
		switch r.op {
		case opEquals:
			if !ok || v != r.values[0] {
				return false
			}
		case opNotEquals:
			if ok && v == r.values[0] {
				return false
			}
		case opIn:
			if !ok || !slices.Contains(r.values, v) {
				return false
			}
		case opNotIn:
			if ok && slices.Contains(r.values, v) {
				return false
			}
		case opExists:
			if !ok {
				return false
			}
		case opNotExists:
			if ok {
				return false
			}
		}
	}
	return true
}

// Parse parses a selector. The empty string selects everything.
func Parse(text string) (Selector, error) {
	if len(text) > MaxLength {
		return Selector{}, fmt.Errorf("selector is %d bytes, at most %d allowed", len(text), MaxLength)
	}
	p := &parser{in: text}
	sel := Selector{text: strings.TrimSpace(text)}
	p.skipSpace()
	if p.done() {
		return sel, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return Selector{}, err
		}
		sel.reqs = append(sel.reqs, r)
		if len(sel.reqs) > MaxRequirements {
			return Selector{}, fmt.Errorf("selector has more than %d requirements", MaxRequirements)
		}
		p.skipSpace()
		if p.done() {
			return sel, nil
		}
		if !p.consume(",") {
			return Selector{}, p.errorf("expected ',' between requirements")
		}
	}
}

type parser struct {
	in  string
	pos int
}

func (p *parser) done() bool { return p.pos >= len(p.in) }

func (p *parser) skipSpace() {
	for !p.done() && (p.in[p.pos] == ' ' || p.in[p.pos] == '\t') {
		p.pos++
	}
}

func (p *parser) consume(tok string) bool {
	if strings.HasPrefix(p.in[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("selector %q at offset %d: %s", p.in, p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) requirement() (requirement, error) {
	p.skipSpace()
	if p.consume("!") {
		p.skipSpace()
		key, err := p.key()
		if err != nil {
			return requirement{}, err
		}
		return requirement{key: key, op: opNotExists}, nil
	}
	key, err := p.key()
	if err != nil {
		return requirement{}, err
	}
	p.skipSpace()
	switch {
	case p.done() || p.in[p.pos] == ',':
		return requirement{key: key, op: opExists}, nil
	case p.consume("!="):
		return p.single(key, opNotEquals)
	case p.consume("=="), p.consume("="):
		return p.single(key, opEquals)
	case p.consumeWord("notin"):
		return p.set(key, opNotIn)
	case p.consumeWord("in"):
		return p.set(key, opIn)
	default:
		return requirement{}, p.errorf("expected an operator (=, ==, !=, in, notin) after key %q", key)
	}
}

// consumeWord consumes an operator word followed by a space or '('.
func (p *parser) consumeWord(w string) bool {
	rest := p.in[p.pos:]
	if !strings.HasPrefix(rest, w) {
		return false
	}
	if len(rest) > len(w) && rest[len(w)] != ' ' && rest[len(w)] != '(' && rest[len(w)] != '\t' {
		return false
	}
	p.pos += len(w)
	return true
}

func (p *parser) single(key string, op operator) (requirement, error) {
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return requirement{}, err
	}
	return requirement{key: key, op: op, values: []string{v}}, nil
}

func (p *parser) set(key string, op operator) (requirement, error) {
	p.skipSpace()
	if !p.consume("(") {
		return requirement{}, p.errorf("expected '(' to open the value set of %q", key)
	}
	var values []string
	for {
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return requirement{}, err
		}
		if v == "" {
			return requirement{}, p.errorf("empty value in the set of %q", key)
		}
		values = append(values, v)
		if len(values) > MaxRequirements {
			return requirement{}, p.errorf("the set of %q has more than %d values", key, MaxRequirements)
		}
		p.skipSpace()
		if p.consume(")") {
			return requirement{key: key, op: op, values: values}, nil
		}
		if !p.consume(",") {
			return requirement{}, p.errorf("expected ',' or ')' in the set of %q", key)
		}
	}
}

func (p *parser) key() (string, error) {
	start := p.pos
	for !p.done() && validate.IsLabelChar(p.in[p.pos]) {
		p.pos++
	}
	if err := p.foreignChar("key"); err != nil {
		return "", err
	}
	key := p.in[start:p.pos]
	if err := validate.LabelKey(key); err != nil {
		return "", p.errorf("%v", err)
	}
	return key, nil
}

func (p *parser) value() (string, error) {
	start := p.pos
	for !p.done() && validate.IsLabelChar(p.in[p.pos]) {
		p.pos++
	}
	if err := p.foreignChar("value"); err != nil {
		return "", err
	}
	v := p.in[start:p.pos]
	if err := validate.LabelValue(v); err != nil {
		return "", p.errorf("%v", err)
	}
	return v, nil
}

// foreignChar names a character at the parser's position that no part of
// a selector may hold — anything outside printable ASCII but a tab — as
// the reason a label key or value ends there, instead of the syntax error
// that it would cause further on.
func (p *parser) foreignChar(what string) error {
	if p.done() {
		return nil
	}
	if c := p.in[p.pos]; c == '\t' || c >= 0x20 && c < 0x7f {
		return nil
	}
	return p.errorf("%s is not allowed in a label %s (use ASCII letters, digits, '-', '_', '.', '/')",
		validate.CharAt(p.in, p.pos), what)
}
