package storetest

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

func tagCases() []testCase {
	return []testCase{
		{"Tags/PutAndFind", tagsPutAndFind},
		{"Tags/ReplacedOnEveryPut", tagsReplaced},
		{"Tags/GoneWithTheBlob", tagsDeleted},
		{"Tags/ConditionalPut", tagsConditional},
		{"Tags/RaceIndexesTheWinner", tagsRace},
		{"Tags/Invalid", tagsInvalid},
		{"Tags/Paging", tagsPaging},
		{"Tags/SparseMatchesAcrossPages", tagsSparse},
		{"Tags/ContainerScoped", tagsContainerScoped},
	}
}

func indexer(t *testing.T, h Harness) store.Indexer {
	t.Helper()
	ix, ok := h.Store.(store.Indexer)
	if !ok {
		t.Fatalf("%T does not implement store.Indexer", h.Store)
	}
	return ix
}

// find returns the names FindAll yields for where, and their tags by name.
func find(t *testing.T, h Harness, c, where string) ([]string, map[string]map[string]string) {
	t.Helper()
	var names []string
	tags := map[string]map[string]string{}
	for it, err := range store.FindAll(ctx(t), indexer(t, h), c, where) {
		is(t, "FindByTags("+where+")", err, nil)
		names = append(names, it.Name)
		tags[it.Name] = it.Tags
	}
	return names, tags
}

func wantNames(t *testing.T, where string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("FindByTags(%s) = %q, want %q", where, got, want)
	}
}

func putTagged(t *testing.T, h Harness, c, name string, tags map[string]string) store.ETag {
	t.Helper()
	etag, err := h.Store.Put(ctx(t), c, name, []byte(name), store.PutOptions{Tags: tags})
	is(t, "Put "+name, err, nil)
	return etag
}

func tagsPutAndFind(t *testing.T, h Harness) {
	c := newContainer(t, h)
	putTagged(t, h, c, "b.json", map[string]string{"state": "dead", "kind": "mail.send", "updated": "2026-12-03T13:07:12Z"})
	putTagged(t, h, c, "a.json", map[string]string{"state": "dead", "kind": "csv:stats", "updated": "2026-12-03T13:08:12Z"})
	putTagged(t, h, c, "c.json", map[string]string{"state": "queued", "kind": "mail.send", "updated": "2026-12-03T13:09:12Z"})
	_, err := h.Store.Put(ctx(t), c, "plain", []byte("x"), store.PutOptions{})
	is(t, "Put untagged", err, nil)

	w := `"state" = 'dead'`
	got, tags := find(t, h, c, w)
	wantNames(t, w, got, "a.json", "b.json")
	if !maps.Equal(tags["a.json"], map[string]string{"state": "dead"}) {
		t.Fatalf("FindByTags(%s) gave tags %v for a.json, want only the named tag", w, tags["a.json"])
	}
	w = `"state"='dead' AND "kind"='mail.send'`
	got, _ = find(t, h, c, w)
	wantNames(t, w, got, "b.json")
	w = `"updated" >= '2026-12-03T13:08:00Z' and "updated" < '2026-12-03T13:10:00Z'`
	got, tags = find(t, h, c, w)
	wantNames(t, w, got, "a.json", "c.json")
	if tags["c.json"]["updated"] != "2026-12-03T13:09:12Z" {
		t.Fatalf("FindByTags(%s) gave tags %v for c.json", w, tags["c.json"])
	}
	w = `"state"='dead' AND "updated" > ''`
	got, tags = find(t, h, c, w)
	wantNames(t, w, got, "a.json", "b.json")
	if len(tags["b.json"]) != 2 {
		t.Fatalf("FindByTags(%s) gave tags %v for b.json, want state and updated", w, tags["b.json"])
	}
	w = `"state"='succeeded'`
	got, _ = find(t, h, c, w)
	wantNames(t, w, got)

	p, err := h.Store.Properties(ctx(t), c, "a.json")
	is(t, "Properties", err, nil)
	_, gp, err := h.Store.Get(ctx(t), c, "a.json", 0)
	is(t, "Get", err, nil)
	if p.TagCount != 3 || gp.TagCount != 3 {
		t.Fatalf("TagCount: Properties %d, Get %d, want 3", p.TagCount, gp.TagCount)
	}
	if p, _ := h.Store.Properties(ctx(t), c, "plain"); p.TagCount != 0 {
		t.Fatalf("TagCount of an untagged blob = %d", p.TagCount)
	}
	counts := map[string]int{}
	for it, err := range h.Store.List(ctx(t), c, "") {
		is(t, "List", err, nil)
		counts[it.Name] = it.TagCount
	}
	if want := map[string]int{"a.json": 3, "b.json": 3, "c.json": 3, "plain": 0}; !maps.Equal(counts, want) {
		t.Fatalf("List's TagCounts %v, want %v", counts, want)
	}
}

func tagsReplaced(t *testing.T, h Harness) {
	c := newContainer(t, h)
	putTagged(t, h, c, "j.json", map[string]string{"state": "queued", "kind": "k"})
	putTagged(t, h, c, "j.json", map[string]string{"state": "running"})
	got, _ := find(t, h, c, `"state"='queued'`)
	wantNames(t, "state=queued after the rewrite", got)
	got, _ = find(t, h, c, `"kind"='k'`)
	wantNames(t, "kind=k after a rewrite without it", got)
	got, _ = find(t, h, c, `"state"='running'`)
	wantNames(t, "state=running", got, "j.json")
	_, err := h.Store.Put(ctx(t), c, "j.json", []byte("x"), store.PutOptions{})
	is(t, "Put without tags", err, nil)
	got, _ = find(t, h, c, `"state"='running'`)
	wantNames(t, "state=running after a write without tags", got)
	if p, _ := h.Store.Properties(ctx(t), c, "j.json"); p.TagCount != 0 {
		t.Fatalf("TagCount after a write without tags = %d", p.TagCount)
	}
}

func tagsDeleted(t *testing.T, h Harness) {
	c := newContainer(t, h)
	putTagged(t, h, c, "j.json", map[string]string{"state": "dead"})
	is(t, "Delete", h.Store.Delete(ctx(t), c, "j.json", store.DeleteOptions{}), nil)
	got, _ := find(t, h, c, `"state"='dead'`)
	wantNames(t, "state=dead after the delete", got)
	_, err := h.Store.Put(ctx(t), c, "j.json", []byte("x"), store.PutOptions{})
	is(t, "Put again, untagged", err, nil)
	got, _ = find(t, h, c, `"state"='dead'`)
	wantNames(t, "state=dead after re-creating the blob untagged", got)
}

func tagsConditional(t *testing.T, h Harness) {
	c := newContainer(t, h)
	etag := putTagged(t, h, c, "j.json", map[string]string{"state": "queued"})
	_, err := h.Store.Put(ctx(t), c, "j.json", nil, store.PutOptions{IfNoneMatchAny: true, Tags: map[string]string{"state": "x"}})
	is(t, "create-only Put over an existing blob", err, store.ErrConflict)
	next, err := h.Store.Put(ctx(t), c, "j.json", nil, store.PutOptions{IfMatch: etag, Tags: map[string]string{"state": "running"}})
	is(t, "If-Match Put", err, nil)
	_, err = h.Store.Put(ctx(t), c, "j.json", nil, store.PutOptions{IfMatch: etag, Tags: map[string]string{"state": "stale"}})
	is(t, "If-Match Put at a stale ETag", err, store.ErrConflict)
	for _, lost := range []string{"x", "stale", "queued"} {
		got, _ := find(t, h, c, `"state"='`+lost+`'`)
		wantNames(t, "state="+lost+" (a lost or replaced write)", got)
	}
	got, _ := find(t, h, c, `"state"='running'`)
	wantNames(t, "state=running", got, "j.json")
	_, err = h.Store.Put(ctx(t), c, "j.json", nil, store.PutOptions{IfMatch: next, Tags: map[string]string{"state": "bad'quote"}})
	is(t, "Put with a bad tag value", err, store.ErrInvalid)
	got, _ = find(t, h, c, `"state"='running'`)
	wantNames(t, "state=running after a refused write", got, "j.json")
}

// tagsRace lets writers race from one ETag, each with its own tag: the index holds
// exactly the winner's.
func tagsRace(t *testing.T, h Harness) {
	c := newContainer(t, h)
	etag := putTagged(t, h, c, "j.json", map[string]string{"w": "none"})
	const n = 6
	var wg sync.WaitGroup
	won := make([]bool, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.Store.Put(ctx(t), c, "j.json", []byte{byte(i)}, store.PutOptions{IfMatch: etag, Tags: map[string]string{"w": string(rune('a' + i))}})
			won[i] = err == nil
		}()
	}
	wg.Wait()
	var winners []string
	for i, ok := range won {
		if ok {
			winners = append(winners, string(rune('a'+i)))
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d writers won a race from one ETag", len(winners))
	}
	got, tags := find(t, h, c, `"w" >= 'a'`)
	wantNames(t, "w >= a", got, "j.json")
	if tags["j.json"]["w"] != winners[0] {
		t.Fatalf("the index holds w=%s, the winner wrote w=%s", tags["j.json"]["w"], winners[0])
	}
}

func tagsInvalid(t *testing.T, h Harness) {
	c := newContainer(t, h)
	eleven := map[string]string{}
	for i := range store.MaxTags + 1 {
		eleven["k"+string(rune('a'+i))] = "v"
	}
	for what, tags := range map[string]map[string]string{
		"a value with @":        {"state": "de@d"},
		"a non-ASCII value":     {"state": "dé"},
		"a key with a quote":    {`st"ate`: "dead"},
		"an empty key":          {"": "x"},
		"a 129-character key":   {strings.Repeat("k", store.MaxTagKey+1): "x"},
		"a 257-character value": {"k": strings.Repeat("v", store.MaxTagValue+1)},
		"eleven tags":           eleven,
	} {
		_, err := h.Store.Put(ctx(t), c, "j.json", nil, store.PutOptions{Tags: tags})
		is(t, "Put with "+what, err, store.ErrInvalid)
	}
	ten := maps.Clone(eleven)
	delete(ten, "ka")
	delete(ten, "kb")
	delete(ten, "kc")
	ten["k"] = strings.Repeat("v", store.MaxTagValue)
	ten[strings.Repeat("k", store.MaxTagKey)] = "a-Z 0+9./:=_"
	putTagged(t, h, c, "j.json", ten)
	got, _ := find(t, h, c, `"`+strings.Repeat("k", store.MaxTagKey)+`"='a-Z 0+9./:=_'`)
	wantNames(t, "the longest key, every allowed character", got, "j.json")

	ix := indexer(t, h)
	for _, bad := range []string{`"state"='dead' OR "state"='queued'`, `"state"<>'dead'`, `"state"='it''s'`, `"state"='dead' AND`} {
		_, err := ix.FindByTags(ctx(t), c, bad, "", 0)
		is(t, "FindByTags("+bad+")", err, store.ErrInvalid)
	}
	_, err := ix.FindByTags(ctx(t), name(), `"state"='dead'`, "", 0)
	is(t, "FindByTags in a missing container", err, store.ErrNotFound)
}

func tagsPaging(t *testing.T, h Harness) {
	c := newContainer(t, h)
	var want []string
	for i := range 5 {
		n := string(rune('a'+i)) + ".json"
		want = append(want, n)
		putTagged(t, h, c, n, map[string]string{"state": "dead"})
	}
	putTagged(t, h, c, "x.json", map[string]string{"state": "queued"})
	ix := indexer(t, h)
	var got []string
	marker, pages := "", 0
	for {
		page, err := ix.FindByTags(ctx(t), c, `"state"='dead'`, marker, 2)
		is(t, "FindByTags page", err, nil)
		if len(page.Items) > 2 {
			t.Fatalf("a page of max 2 held %d", len(page.Items))
		}
		for _, it := range page.Items {
			got = append(got, it.Name)
		}
		pages++
		if page.Next == "" || pages > 10 {
			break
		}
		marker = page.Next
	}
	wantNames(t, "state=dead, pages of 2", got, want...)
	if pages < 3 {
		t.Fatalf("5 matches in pages of 2 came in %d pages", pages)
	}
}

func tagsContainerScoped(t *testing.T, h Harness) {
	c, other := newContainer(t, h), newContainer(t, h)
	putTagged(t, h, c, "j.json", map[string]string{"state": "dead"})
	putTagged(t, h, other, "k.json", map[string]string{"state": "dead"})
	got, _ := find(t, h, c, `"state"='dead'`)
	wantNames(t, "state=dead in one container", got, "j.json")
	w := `@container='` + c + `' AND "state"='dead'`
	got, _ = find(t, h, c, w)
	wantNames(t, w, got, "j.json")
}

// tagsSparse pages with few matches among many blobs: every match is found, whatever
// the pages look like (Azurite searches only a page's worth of blobs per call; the driver
// works around it).
func tagsSparse(t *testing.T, h Harness) {
	c := newContainer(t, h)
	var want []string
	for i := range 12 {
		n := string(rune('a'+i)) + ".json"
		state := "succeeded"
		if i == 3 || i == 8 || i == 11 {
			state = "dead"
			want = append(want, n)
		}
		putTagged(t, h, c, n, map[string]string{"state": state})
	}
	ix := indexer(t, h)
	var got []string
	marker := ""
	for pages := 0; ; pages++ {
		if pages > 12 {
			t.Fatal("paging does not end")
		}
		page, err := ix.FindByTags(ctx(t), c, `"state"='dead'`, marker, 2)
		is(t, "FindByTags page", err, nil)
		for _, it := range page.Items {
			got = append(got, it.Name)
		}
		if page.Next == "" {
			break
		}
		marker = page.Next
	}
	wantNames(t, "3 of 12 dead, pages of 2", got, want...)
}
