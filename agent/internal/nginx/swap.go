package nginx

import (
	"fmt"
	"strings"
)

// swap replaces one upstream server by another.
type swap struct{ from, to string }

// swapOutcome is the result of swapServers.
type swapOutcome struct {
	// content is the new file; equal to the input when nothing changed.
	content []byte
	// swapped counts the servers replaced.
	swapped int
}

// swapServers replaces the address of every server directive listing a
// swap's from by its to, in the upstream blocks of src (only the block
// named block when it is not empty), in one edit: parameters, comments and
// formatting stay. A swap whose from is absent and whose to is present is
// done already; one with neither, or with both, is an error and nothing
// changes.
func swapServers(src []byte, block string, swaps []swap) (swapOutcome, error) {
	blocks, err := parseUpstreams(src)
	if err != nil {
		return swapOutcome{}, err
	}
	listed := map[string][]token{}
	blockSeen := false
	for _, b := range blocks {
		if block != "" && b.name != block {
			continue
		}
		blockSeen = true
		for _, d := range b.servers {
			listed[d.address.value] = append(listed[d.address.value], d.address)
		}
	}
	if block != "" && !blockSeen {
		return swapOutcome{}, errBlockNotFound
	}
	var edits []splice
	var missing, both []string
	for _, s := range swaps {
		from, to := listed[s.from], listed[s.to]
		switch {
		case len(from) > 0 && len(to) > 0:
			both = append(both, s.from+" and "+s.to)
		case len(from) > 0:
			for _, tok := range from {
				edits = append(edits, splice{start: tok.start, end: tok.end, text: s.to})
			}
		case len(to) == 0:
			missing = append(missing, s.from)
		}
	}
	switch {
	case len(both) > 0:
		return swapOutcome{}, fmt.Errorf("the upstream lists both servers of a swap: %s; nothing was changed", strings.Join(both, ", "))
	case len(missing) > 0:
		return swapOutcome{}, fmt.Errorf("%w: %s (nor its replacement); nothing was changed", errServerNotFound, strings.Join(missing, ", "))
	}
	return swapOutcome{content: applySplices(src, edits), swapped: len(edits)}, nil
}

// swapText describes swaps for messages: "a:80 → a:81, b:80 → b:81".
func swapText(swaps []swap) string {
	parts := make([]string, len(swaps))
	for i, s := range swaps {
		parts[i] = s.from + " → " + s.to
	}
	if len(parts) > 10 {
		return strings.Join(parts[:10], ", ") + fmt.Sprintf(" and %d more", len(parts)-10)
	}
	return strings.Join(parts, ", ")
}
