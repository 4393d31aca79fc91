package api

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Every list RPC's page token has this one format, written and read only
// here: base64url (no padding) of four fields separated by NUL bytes —
// the format version, the listing that issued it (the RPC's name), a
// digest of the query's filter and the cursor (the last item of the
// page). A token from another listing, another version or another filter
// is refused naming page_token, never read as an empty page.
const (
	pageTokenVersion = "p1"
	pageTokenSep     = "\x00"
	// maxPageTokenLength bounds a token before it is decoded: a cursor is an
	// ID of at most maxShortString bytes, the rest is a few dozen bytes.
	maxPageTokenLength = 2 * maxShortString
)

// pageListing names the list RPC a page token belongs to.
type pageListing string

// The listings that issue page tokens.
const (
	listingAgents      pageListing = "ListAgents"
	listingCommands    pageListing = "ListCommands"
	listingRollouts    pageListing = "ListRollouts"
	listingAuditEvents pageListing = "ListAuditEvents"
	listingBackups     pageListing = "ListBackups"
)

// pageFilter is the canonical text of a query's filter (everything but the
// page size and token) whose digest binds a token to the query; each part
// is length-prefixed, so no two different filters have the same text.
func pageFilter(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "%d:%s;", len(p), p)
	}
	return b.String()
}

func filterDigest(filter string) string {
	sum := sha256.Sum256([]byte(filter))
	return hex.EncodeToString(sum[:8])
}

// encodePageToken returns the token for the page after cursor.
func encodePageToken(l pageListing, filter, cursor string) string {
	raw := strings.Join([]string{pageTokenVersion, string(l), filterDigest(filter), cursor}, pageTokenSep)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodePageToken returns the cursor of a token that l issued for the same
// filter, or an InvalidArgument error naming page_token.
func decodePageToken(l pageListing, filter, tok string) (string, error) {
	notOurs := invalid("page_token", "not a token from a previous %s response; leave it empty for the first page", l)
	if len(tok) > maxPageTokenLength {
		return "", notOurs
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", notOurs
	}
	parts := strings.SplitN(string(raw), pageTokenSep, 4)
	if len(parts) != 4 || parts[0] != pageTokenVersion || parts[1] != string(l) || parts[3] == "" {
		return "", notOurs
	}
	if parts[2] != filterDigest(filter) {
		return "", invalid("page_token", "issued for a %s query with another filter; send the filter of the first page with it, or start again without page_token", l)
	}
	return parts[3], nil
}

// enumList is the canonical text of a list of enum values in a filter.
func enumList[E ~int32](vals []E) string {
	var b strings.Builder
	for _, v := range vals {
		fmt.Fprintf(&b, "%d,", v)
	}
	return b.String()
}
