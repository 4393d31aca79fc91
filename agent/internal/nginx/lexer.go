package nginx

import (
	"fmt"
	"strings"
)

// tokenKind is the kind of a lexical token of nginx's configuration syntax.
type tokenKind int

const (
	tokWord   tokenKind = iota // a directive name or argument, quoted or not
	tokSemi                    // ;
	tokLBrace                  // {
	tokRBrace                  // }
)

// token is one token with its byte span in the source, so that edits can
// change exactly its bytes and leave the rest of the file as it was.
type token struct {
	kind  tokenKind
	start int    // offset of the first byte
	end   int    // offset after the last byte
	value string // a word's text without quotes and escapes
	line  int    // 1-based line of the first byte, for error messages
}

// lex splits src into tokens the way nginx's ngx_conf_read_token does:
// words are separated by blanks and end at ';', '{' or '}'; '#' at the
// start of a word begins a comment up to the end of the line; a word that
// starts with a quote runs to the matching quote; a backslash escapes the
// next byte; "${name}" is one word.
func lex(src []byte) ([]token, error) {
	l := lexer{src: src, line: 1}
	for {
		tok, ok, err := l.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return l.tokens, nil
		}
		l.tokens = append(l.tokens, tok)
	}
}

type lexer struct {
	src    []byte
	pos    int
	line   int
	tokens []token
}

// next returns the next token, or ok=false at the end of the input.
func (l *lexer) next() (token, bool, error) {
	l.skipBlanksAndComments()
	if l.pos >= len(l.src) {
		return token{}, false, nil
	}
	start, line := l.pos, l.line
	switch c := l.src[l.pos]; c {
	case ';', '{', '}':
		l.pos++
		return token{kind: punctuation(c), start: start, end: l.pos, line: line}, true, nil
	case '"', '\'':
		value, err := l.quoted(c)
		if err != nil {
			return token{}, false, err
		}
		return token{kind: tokWord, start: start, end: l.pos, value: value, line: line}, true, nil
	default:
		value := l.bare()
		return token{kind: tokWord, start: start, end: l.pos, value: value, line: line}, true, nil
	}
}

func punctuation(c byte) tokenKind {
	switch c {
	case ';':
		return tokSemi
	case '{':
		return tokLBrace
	default:
		return tokRBrace
	}
}

func (l *lexer) skipBlanksAndComments() {
	for l.pos < len(l.src) {
		switch l.src[l.pos] {
		case '\n':
			l.line++
			l.pos++
		case ' ', '\t', '\r':
			l.pos++
		case '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
		default:
			return
		}
	}
}

// quoted reads a quoted word that starts at l.pos with the quote q.
func (l *lexer) quoted(q byte) (string, error) {
	line := l.line
	var b strings.Builder
	for l.pos++; l.pos < len(l.src); l.pos++ {
		c := l.src[l.pos]
		switch {
		case c == '\n':
			l.line++
		case c == '\\' && l.pos+1 < len(l.src):
			l.pos++
			c = l.src[l.pos]
			if c == '\n' {
				l.line++
			}
		case c == q:
			l.pos++
			return b.String(), nil
		}
		b.WriteByte(c)
	}
	return "", fmt.Errorf("line %d: unterminated quoted string", line)
}

// bare reads an unquoted word.
func (l *lexer) bare() string {
	var b strings.Builder
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' || c == '{' || c == '}':
			return b.String()
		case c == '\\' && l.pos+1 < len(l.src):
			l.pos++
			c = l.src[l.pos]
			if c == '\n' {
				l.line++
			}
		case c == '$' && l.pos+1 < len(l.src) && l.src[l.pos+1] == '{':
			// "${name}" keeps its braces inside the word.
			end := l.pos + 2
			for end < len(l.src) && l.src[end] != '}' && l.src[end] != '\n' {
				end++
			}
			if end < len(l.src) && l.src[end] == '}' {
				b.Write(l.src[l.pos : end+1])
				l.pos = end + 1
				continue
			}
		}
		b.WriteByte(c)
		l.pos++
	}
	return b.String()
}
