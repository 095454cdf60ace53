package worker

import (
	"bytes"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// appFS is the app folder the worker's host reads, held in memory: host.json and one
// <Name>/function.json per function, keyed by slash-separated path. It implements
// fs.ReadFileFS and fs.ReadDirFS; Open serves the files and directories.
type appFS map[string][]byte

// ReadFile implements fs.ReadFileFS.
func (a appFS) ReadFile(name string) ([]byte, error) {
	b, ok := a[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return bytes.Clone(b), nil
}

// ReadDir implements fs.ReadDirFS: the files and subdirectories directly under dir.
func (a appFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	seen := map[string]bool{}
	var out []fs.DirEntry
	for p, b := range a {
		rest, ok := strings.CutPrefix(p, dirPrefix(dir))
		if !ok {
			continue
		}
		first, _, nested := strings.Cut(rest, "/")
		if seen[first] {
			continue
		}
		seen[first] = true
		info := entryInfo{name: first, dir: nested}
		if !nested {
			info.size = int64(len(b))
		}
		out = append(out, fs.FileInfoToDirEntry(info))
	}
	if len(out) == 0 && dir != "." {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	slices.SortFunc(out, func(x, y fs.DirEntry) int { return strings.Compare(x.Name(), y.Name()) })
	return out, nil
}

func dirPrefix(dir string) string {
	if dir == "." {
		return ""
	}
	return dir + "/"
}

// Open implements fs.FS.
func (a appFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if b, ok := a[name]; ok {
		return &memFile{Reader: bytes.NewReader(b), info: entryInfo{name: path.Base(name), size: int64(len(b))}}, nil
	}
	entries, err := a.ReadDir(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memDir{info: entryInfo{name: path.Base(name), dir: true}, entries: entries}, nil
}

// entryInfo is the fs.FileInfo of an appFS file or directory.
type entryInfo struct {
	name string
	size int64
	dir  bool
}

func (e entryInfo) Name() string       { return e.name }
func (e entryInfo) Size() int64        { return e.size }
func (e entryInfo) ModTime() time.Time { return time.Time{} }
func (e entryInfo) IsDir() bool        { return e.dir }
func (e entryInfo) Sys() any           { return nil }
func (e entryInfo) Mode() fs.FileMode {
	if e.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}

type memFile struct {
	*bytes.Reader
	info entryInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

type memDir struct {
	info    entryInfo
	entries []fs.DirEntry
}

func (d *memDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *memDir) Close() error               { return nil }
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: fs.ErrInvalid}
}

// ReadDir implements fs.ReadDirFile.
func (d *memDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	k := min(n, len(d.entries))
	out := d.entries[:k]
	d.entries = d.entries[k:]
	return out, nil
}
