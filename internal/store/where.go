package store

import (
	"fmt"
	"strings"
)

// Where is a parsed FindByTags expression (see Indexer), for drivers that evaluate it
// themselves.
type Where struct {
	container string // from @container; "" when absent
	conds     []cond
}

type cond struct {
	key, op, value string
}

// ParseWhere parses a FindByTags expression; a malformed one gives an error wrapping
// ErrInvalid that says where.
func ParseWhere(expr string) (Where, error) {
	var w Where
	p := &whereParser{s: expr}
	sides := map[string]bool{}
	for {
		c, err := p.cond()
		if err != nil {
			return Where{}, fmt.Errorf("tag expression %q: %w: %w", expr, err, ErrInvalid)
		}
		if err := w.add(c, sides); err != nil {
			return Where{}, fmt.Errorf("tag expression %q: %w: %w", expr, err, ErrInvalid)
		}
		p.space()
		if p.done() {
			return w, nil
		}
		if !p.keyword("AND") {
			return Where{}, fmt.Errorf("tag expression %q: expected AND at %d: %w", expr, p.i, ErrInvalid)
		}
	}
}

// add adds c to w; sides records which side of each key has a range already.
func (w *Where) add(c cond, sides map[string]bool) error {
	if c.key == "@container" {
		if c.op != "=" || w.container != "" {
			return fmt.Errorf("@container takes one equality")
		}
		w.container = c.value
		return nil
	}
	if c.op != "=" {
		side := c.key + "\x00" + c.op[:1]
		if sides[side] {
			return fmt.Errorf("two %s conditions on %q", c.op[:1], c.key)
		}
		sides[side] = true
	}
	w.conds = append(w.conds, c)
	return nil
}

// Match reports whether a blob of container with tags satisfies w, and returns the tags
// the expression names.
func (w Where) Match(container string, tags map[string]string) (map[string]string, bool) {
	if w.container != "" && w.container != container {
		return nil, false
	}
	named := map[string]string{}
	for _, c := range w.conds {
		v, ok := tags[c.key]
		if !ok || !compare(v, c.op, c.value) {
			return nil, false
		}
		named[c.key] = v
	}
	return named, true
}

func compare(v, op, want string) bool {
	n := strings.Compare(v, want)
	switch op {
	case "=":
		return n == 0
	case ">":
		return n > 0
	case ">=":
		return n >= 0
	case "<":
		return n < 0
	default: // "<="
		return n <= 0
	}
}

type whereParser struct {
	s string
	i int
}

func (p *whereParser) done() bool { return p.i >= len(p.s) }

func (p *whereParser) space() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// keyword consumes kw (case-insensitive) followed by a space.
func (p *whereParser) keyword(kw string) bool {
	end := p.i + len(kw)
	if end >= len(p.s) || !strings.EqualFold(p.s[p.i:end], kw) || p.s[end] != ' ' {
		return false
	}
	p.i = end
	return true
}

// cond parses `"key" op 'value'` or `@container op 'value'`.
func (p *whereParser) cond() (cond, error) {
	p.space()
	var c cond
	var err error
	if strings.HasPrefix(p.s[p.i:], "@container") {
		p.i += len("@container")
		c.key = "@container"
	} else if c.key, err = p.quoted('"'); err != nil {
		return cond{}, err
	}
	if c.key == "" {
		return cond{}, fmt.Errorf("empty tag key at %d", p.i)
	}
	p.space()
	for _, op := range []string{">=", "<=", "=", ">", "<"} {
		if strings.HasPrefix(p.s[p.i:], op) {
			c.op = op
			p.i += len(op)
			break
		}
	}
	if c.op == "" || strings.HasPrefix(p.s[p.i:], ">") {
		return cond{}, fmt.Errorf("expected one of = > >= < <= at %d", p.i)
	}
	p.space()
	if c.value, err = p.quoted('\''); err != nil {
		return cond{}, err
	}
	return c, nil
}

// quoted parses a string in quote characters q holding only tag characters.
func (p *whereParser) quoted(q byte) (string, error) {
	if p.done() || p.s[p.i] != q {
		return "", fmt.Errorf("expected %c at %d", q, p.i)
	}
	start := p.i + 1
	end := strings.IndexByte(p.s[start:], q)
	if end < 0 {
		return "", fmt.Errorf("unterminated %c at %d", q, p.i)
	}
	v := p.s[start : start+end]
	if !tagString(v) {
		return "", fmt.Errorf("%q at %d has a character not allowed in tags", v, start)
	}
	p.i = start + end + 1
	return v, nil
}
