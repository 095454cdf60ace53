package store

import (
	"errors"
	"maps"
	"testing"
)

func TestParseWhere(t *testing.T) {
	tags := map[string]string{"state": "dead", "kind": "mail.send", "updated": "2026-12-03T13:07:12Z"}
	for expr, want := range map[string]bool{
		`"state"='dead'`: true,
		`"state" = 'dead' AND "kind"='mail.send'`:      true,
		`"state"='dead' and "updated" >= '2026-12-03'`: true,
		`"updated" > '2026-12-03T13:07:12Z'`:           false,
		`"updated" <= '2026-12-03T13:07:12Z'`:          true,
		`"updated" < '2026-12-03T13:07:12Z'`:           false,
		`"updated" > '2026' AND "updated" < '2027'`:    true,
		`@container='c1' AND "state"='dead'`:           true,
		`@container='c2' AND "state"='dead'`:           false,
		`"state"='dead' AND "missing" >= ''`:           false,
		`"kind"='mail.send' AND "state"='queued'`:      false,
	} {
		w, err := ParseWhere(expr)
		if err != nil {
			t.Fatalf("ParseWhere(%s): %v", expr, err)
		}
		named, ok := w.Match("c1", tags)
		if ok != want {
			t.Errorf("%s matched %v, want %v", expr, ok, want)
		}
		if ok {
			for k := range named {
				if named[k] != tags[k] {
					t.Errorf("%s named %v", expr, named)
				}
			}
		}
	}
	w, _ := ParseWhere(`"state"='dead' AND "updated" > ''`)
	if named, _ := w.Match("c", tags); !maps.Equal(named, map[string]string{"state": "dead", "updated": tags["updated"]}) {
		t.Errorf("named tags %v", named)
	}
	for _, bad := range []string{``, `"state"`, `"state"=`, `"state"='dead`, `"state"='dead' OR "kind"='x'`, `"state"<>'x'`,
		`"state"=>'x'`, `"t" > 'a' AND "t" >= 'b'`, `"t" < 'a' AND "t" <= 'b'`, `@container>'c'`, `""='x'`, `"a"='x' AND`, `"a"='x' ANDX "b"='y'`, `"a"='q"'`} {
		if _, err := ParseWhere(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseWhere(%s) = %v, want ErrInvalid", bad, err)
		}
	}
}
