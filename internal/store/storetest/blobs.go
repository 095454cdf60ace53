package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

func blobCases() []testCase {
	return []testCase{
		{"Blob/CreateContainerIsIdempotent", blobCreateIdempotent},
		{"Blob/DeleteContainer", blobDeleteContainer},
		{"Blob/MissingIsNotFound", blobMissing},
		{"Blob/InvalidArguments", blobInvalid},
		{"Blob/PutGetRoundTrip", blobRoundTrip},
		{"Blob/DefaultContentType", blobDefaultContentType},
		{"Blob/ETagChangesOnEveryWrite", blobETagChanges},
		{"Blob/IfNoneMatchAny", blobIfNoneMatch},
		{"Blob/IfMatch", blobIfMatch},
		{"Blob/DeleteIfMatch", blobDeleteIfMatch},
		{"Blob/GetMaxBytes", blobMaxBytes},
		{"Blob/OpenStreams", blobOpen},
		{"Blob/ListByPrefixInNameOrder", blobList},
		{"Blob/CreateRaceHasOneWinner", blobCreateRace},
		{"Blob/ConditionalUpdateRaceLosesNothing", blobUpdateRace},
	}
}

func blobCreateIdempotent(t *testing.T, h Harness) {
	c := newContainer(t, h)
	_, err := h.Store.Put(ctx(t), c, "a", []byte("1"), store.PutOptions{})
	is(t, "Put", err, nil)
	is(t, "second CreateContainer", h.Store.CreateContainer(ctx(t), c), nil)
	_, _, err = h.Store.Get(ctx(t), c, "a", 0)
	is(t, "Get after second CreateContainer", err, nil)
}

func blobDeleteContainer(t *testing.T, h Harness) {
	c := name()
	is(t, "DeleteContainer of a missing container", h.Store.DeleteContainer(ctx(t), c), store.ErrNotFound)
	is(t, "CreateContainer", h.Store.CreateContainer(ctx(t), c), nil)
	is(t, "DeleteContainer", h.Store.DeleteContainer(ctx(t), c), nil)
}

func blobMissing(t *testing.T, h Harness) {
	missing := name()
	_, err := h.Store.Put(ctx(t), missing, "a", nil, store.PutOptions{})
	is(t, "Put into a missing container", err, store.ErrNotFound)
	for _, err := range h.Store.List(ctx(t), missing, "") {
		is(t, "List of a missing container", err, store.ErrNotFound)
	}
	c := newContainer(t, h)
	_, _, err = h.Store.Get(ctx(t), c, "nope", 0)
	is(t, "Get", err, store.ErrNotFound)
	_, _, err = h.Store.Get(ctx(t), missing, "nope", 0)
	is(t, "Get from a missing container", err, store.ErrNotFound)
	_, err = h.Store.Properties(ctx(t), c, "nope")
	is(t, "Properties", err, store.ErrNotFound)
	is(t, "Delete", h.Store.Delete(ctx(t), c, "nope", store.DeleteOptions{}), store.ErrNotFound)
}

func blobInvalid(t *testing.T, h Harness) {
	for _, bad := range []string{"ab", "Abc", "a--b", "-abc", "a_b"} {
		is(t, "CreateContainer("+bad+")", h.Store.CreateContainer(ctx(t), bad), store.ErrInvalid)
	}
	c := newContainer(t, h)
	_, err := h.Store.Put(ctx(t), c, "", nil, store.PutOptions{})
	is(t, "Put with an empty name", err, store.ErrInvalid)
	_, err = h.Store.Put(ctx(t), c, "a", nil, store.PutOptions{Metadata: map[string]string{"not-an-identifier": "x"}})
	is(t, "Put with a bad metadata key", err, store.ErrInvalid)
	_, err = h.Store.Put(ctx(t), c, "a", nil, store.PutOptions{IfMatch: `"x"`, IfNoneMatchAny: true})
	is(t, "Put with IfMatch and IfNoneMatchAny", err, store.ErrInvalid)
}

func blobRoundTrip(t *testing.T, h Harness) {
	c := newContainer(t, h)
	data := []byte(`{"state":"queued"}`)
	md := map[string]string{"AzureWebJobsParentId": "inv-1", "kind": "email"}
	etag, err := h.Store.Put(ctx(t), c, "jobs/1.json", data, store.PutOptions{ContentType: "application/json", Metadata: md})
	is(t, "Put", err, nil)
	if etag == "" {
		t.Fatal("Put returned no ETag")
	}
	got, p, err := h.Store.Get(ctx(t), c, "jobs/1.json", 0)
	is(t, "Get", err, nil)
	want := map[string]string{"azurewebjobsparentid": "inv-1", "kind": "email"}
	switch {
	case !bytes.Equal(got, data):
		t.Fatalf("Get = %q, want %q", got, data)
	case p.ETag != etag || p.ContentType != "application/json" || p.ContentLength != int64(len(data)):
		t.Fatalf("properties %+v, want ETag %s, application/json, %d bytes", p, etag, len(data))
	case !sameMap(p.Metadata, want):
		t.Fatalf("metadata %v, want %v (keys lower-cased)", p.Metadata, want)
	case p.LastModified.IsZero() || time.Since(p.LastModified) > 24*time.Hour && time.Until(p.LastModified) > 24*time.Hour:
		t.Fatalf("LastModified %v", p.LastModified)
	}
	p2, err := h.Store.Properties(ctx(t), c, "jobs/1.json")
	is(t, "Properties", err, nil)
	if p2.ETag != p.ETag || p2.ContentLength != p.ContentLength || p2.ContentType != p.ContentType || !sameMap(p2.Metadata, want) || !p2.LastModified.Equal(p.LastModified) {
		t.Fatalf("Properties %+v differ from Get's %+v", p2, p)
	}
	_, err = h.Store.Put(ctx(t), c, "empty", nil, store.PutOptions{})
	is(t, "Put of no bytes", err, nil)
	if got, p, err := h.Store.Get(ctx(t), c, "empty", 0); err != nil || len(got) != 0 || p.ContentLength != 0 {
		t.Fatalf("Get of an empty blob = %q, %+v, %v", got, p, err)
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func blobDefaultContentType(t *testing.T, h Harness) {
	c := newContainer(t, h)
	_, err := h.Store.Put(ctx(t), c, "b", []byte{0, 1, 2}, store.PutOptions{})
	is(t, "Put", err, nil)
	p, err := h.Store.Properties(ctx(t), c, "b")
	is(t, "Properties", err, nil)
	if p.ContentType != "application/octet-stream" || len(p.Metadata) != 0 {
		t.Fatalf("properties %+v, want application/octet-stream and no metadata", p)
	}
}

func blobETagChanges(t *testing.T, h Harness) {
	c := newContainer(t, h)
	seen := map[store.ETag]bool{}
	for range 3 {
		etag, err := h.Store.Put(ctx(t), c, "same", []byte("same bytes"), store.PutOptions{})
		is(t, "Put", err, nil)
		if seen[etag] {
			t.Fatalf("ETag %s repeated after a rewrite", etag)
		}
		seen[etag] = true
	}
}

func blobIfNoneMatch(t *testing.T, h Harness) {
	c := newContainer(t, h)
	create := store.PutOptions{IfNoneMatchAny: true}
	first, err := h.Store.Put(ctx(t), c, "once", []byte("1"), create)
	is(t, "first create-only Put", err, nil)
	_, err = h.Store.Put(ctx(t), c, "once", []byte("2"), create)
	is(t, "second create-only Put", err, store.ErrConflict)
	got, p, _ := h.Store.Get(ctx(t), c, "once", 0)
	if string(got) != "1" || p.ETag != first {
		t.Fatalf("blob = %q at %s, want the first write", got, p.ETag)
	}
}

func blobIfMatch(t *testing.T, h Harness) {
	c := newContainer(t, h)
	_, err := h.Store.Put(ctx(t), c, "absent", []byte("x"), store.PutOptions{IfMatch: `"0x8D000000000000"`})
	is(t, "If-Match Put of a missing blob", err, store.ErrConflict)
	v1, err := h.Store.Put(ctx(t), c, "r", []byte("1"), store.PutOptions{})
	is(t, "Put", err, nil)
	v2, err := h.Store.Put(ctx(t), c, "r", []byte("2"), store.PutOptions{IfMatch: v1})
	is(t, "If-Match Put at the current ETag", err, nil)
	_, err = h.Store.Put(ctx(t), c, "r", []byte("3"), store.PutOptions{IfMatch: v1})
	is(t, "If-Match Put at a stale ETag", err, store.ErrConflict)
	got, p, _ := h.Store.Get(ctx(t), c, "r", 0)
	if string(got) != "2" || p.ETag != v2 {
		t.Fatalf("blob = %q at %s, want \"2\" at %s", got, p.ETag, v2)
	}
}

func blobDeleteIfMatch(t *testing.T, h Harness) {
	c := newContainer(t, h)
	v1, _ := h.Store.Put(ctx(t), c, "d", []byte("1"), store.PutOptions{})
	v2, err := h.Store.Put(ctx(t), c, "d", []byte("2"), store.PutOptions{})
	is(t, "Put", err, nil)
	is(t, "Delete at a stale ETag", h.Store.Delete(ctx(t), c, "d", store.DeleteOptions{IfMatch: v1}), store.ErrConflict)
	is(t, "Delete at the current ETag", h.Store.Delete(ctx(t), c, "d", store.DeleteOptions{IfMatch: v2}), nil)
	is(t, "If-Match Delete of a missing blob", h.Store.Delete(ctx(t), c, "d", store.DeleteOptions{IfMatch: v2}), store.ErrConflict)
	is(t, "Delete of a missing blob", h.Store.Delete(ctx(t), c, "d", store.DeleteOptions{}), store.ErrNotFound)
}

func blobOpen(t *testing.T, h Harness) {
	c := newContainer(t, h)
	data := bytes.Repeat([]byte("abc,"), 1000)
	etag, err := h.Store.Put(ctx(t), c, "big.csv", data, store.PutOptions{ContentType: "text/csv"})
	is(t, "Put", err, nil)
	body, p, err := h.Store.Open(ctx(t), c, "big.csv", int64(len(data)))
	is(t, "Open with max = size", err, nil)
	got, err := io.ReadAll(body)
	is(t, "read the body", err, nil)
	is(t, "Close", body.Close(), nil)
	if !bytes.Equal(got, data) || p.ETag != etag || p.ContentLength != int64(len(data)) || p.ContentType != "text/csv" {
		t.Fatalf("Open read %d bytes, properties %+v; want %d bytes, ETag %s, text/csv", len(got), p, len(data), etag)
	}
	_, _, err = h.Store.Open(ctx(t), c, "big.csv", int64(len(data))-1)
	is(t, "Open with max = size-1", err, store.ErrTooLarge)
	_, _, err = h.Store.Open(ctx(t), c, "nope", 0)
	is(t, "Open of a missing blob", err, store.ErrNotFound)
}

func blobMaxBytes(t *testing.T, h Harness) {
	c := newContainer(t, h)
	data := bytes.Repeat([]byte("z"), 1000)
	_, err := h.Store.Put(ctx(t), c, "big", data, store.PutOptions{})
	is(t, "Put", err, nil)
	got, _, err := h.Store.Get(ctx(t), c, "big", 1000)
	is(t, "Get with max = size", err, nil)
	if len(got) != 1000 {
		t.Fatalf("Get returned %d bytes", len(got))
	}
	_, _, err = h.Store.Get(ctx(t), c, "big", 999)
	is(t, "Get with max = size-1", err, store.ErrTooLarge)
}

func blobList(t *testing.T, h Harness) {
	c := newContainer(t, h)
	names := []string{"b/2.json", "a/1.json", "b/10.json", "b/1.json", "c", "b"}
	etags := map[string]store.ETag{}
	for _, n := range names {
		etag, err := h.Store.Put(ctx(t), c, n, []byte(n), store.PutOptions{ContentType: "text/plain", Metadata: map[string]string{"Name": "v"}})
		is(t, "Put "+n, err, nil)
		etags[n] = etag
	}
	list := func(prefix string) []store.Item {
		var out []store.Item
		for it, err := range h.Store.List(ctx(t), c, prefix) {
			is(t, "List", err, nil)
			out = append(out, it)
		}
		return out
	}
	var got []string
	for _, it := range list("b/") {
		got = append(got, it.Name)
		if it.ETag != etags[it.Name] || it.ContentLength != int64(len(it.Name)) || it.ContentType != "text/plain" ||
			it.LastModified.IsZero() || it.Metadata["name"] != "v" {
			t.Fatalf("listed %+v: want ETag %s, %d bytes, text/plain, a modification time, metadata name=v", it, etags[it.Name], len(it.Name))
		}
	}
	if want := []string{"b/1.json", "b/10.json", "b/2.json"}; !slices.Equal(got, want) {
		t.Fatalf("List(b/) = %v, want %v", got, want)
	}
	all := list("")
	if len(all) != len(names) || all[0].Name != "a/1.json" || all[len(all)-1].Name != "c" {
		t.Fatalf("List() = %v, want all %d in name order", all, len(names))
	}
	if none := list("zzz"); len(none) != 0 {
		t.Fatalf("List(zzz) = %v, want nothing", none)
	}
	n := 0
	for range h.Store.List(ctx(t), c, "") {
		n++
		break
	}
	if n != 1 {
		t.Fatal("List did not stop when the loop broke")
	}
}

func blobCreateRace(t *testing.T, h Harness) {
	c := newContainer(t, h)
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		wins, conflicts int
		other           []error
	)
	for i := range 8 {
		wg.Go(func() {
			_, err := h.Store.Put(ctx(t), c, "lock", []byte{byte(i)}, store.PutOptions{IfNoneMatchAny: true})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				other = append(other, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != 7 || len(other) > 0 {
		t.Fatalf("8 racing create-only writes: %d won, %d conflicts, errors %v; want 1 and 7", wins, conflicts, other)
	}
}

// blobUpdateRace has writers increment one counter with read, If-Match write, retry on
// conflict: no increment may be lost.
func blobUpdateRace(t *testing.T, h Harness) {
	c := newContainer(t, h)
	_, err := h.Store.Put(ctx(t), c, "counter", []byte("0"), store.PutOptions{})
	is(t, "Put", err, nil)
	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				if err := increment(h, t, c); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	data, _, _ := h.Store.Get(ctx(t), c, "counter", 0)
	var n int
	_ = json.Unmarshal(data, &n)
	if n != writers*each {
		t.Fatalf("counter = %d, want %d", n, writers*each)
	}
}

func increment(h Harness, t *testing.T, c string) error {
	for {
		data, p, err := h.Store.Get(ctx(t), c, "counter", 0)
		if err != nil {
			return err
		}
		var n int
		if err := json.Unmarshal(data, &n); err != nil {
			return err
		}
		next, _ := json.Marshal(n + 1)
		_, err = h.Store.Put(ctx(t), c, "counter", next, store.PutOptions{IfMatch: p.ETag})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}
