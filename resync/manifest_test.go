package resync

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"
)

// synthetic is a manifest with every kind, a file whose hashes span parts,
// and parts cut by entry count.
func synthetic() *Manifest {
	m := &Manifest{BlockSize: 4096}
	add := func(e Entry, n int) {
		hs := make([]Hash, n)
		for i := range hs {
			hs[i] = hashBlock([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		}
		if n == 0 {
			hs = nil
		}
		m.Entries = append(m.Entries, e)
		m.Hashes = append(m.Hashes, hs)
	}
	add(Entry{Path: "big", Kind: KindFile, Mode: 0o600, Size: int64(partHashes+10) * 4096, Nlink: 1, Ino: 9}, partHashes+10)
	add(Entry{Path: "d", Kind: KindDir, Mode: 0o1777}, 0)
	for i := range partEntries + 3 {
		add(Entry{Path: fmt.Sprintf("d/%05d", i), Kind: KindFile, Size: 10, Nlink: 2, Ino: 7}, 1)
	}
	add(Entry{Path: "link", Kind: KindSymlink, Target: "../out", Nlink: 1}, 0)
	return m
}

func TestManifestRoundTrip(t *testing.T) {
	m := synthetic()
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Entries, m.Entries) || !reflect.DeepEqual(got.Hashes, m.Hashes) {
		t.Errorf("round trip changed the manifest")
	}
}

func TestBuildManifest(t *testing.T) {
	dir := t.TempDir()
	sampleTree(t, dir)
	m, err := BuildManifest(context.Background(), dir, 4096, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, hs := m.Lookup("big/db.img")
	if e == nil || len(hs) != (3<<20+123+4095)/4096 || hs[0] != hashBlock(randBytes(2, 3<<20+123)[:4096]) {
		t.Fatalf("big/db.img: entry %+v with %d hashes", e, len(hs))
	}
	if e, hs := m.Lookup("dir/out"); e == nil || e.Kind != KindSymlink || hs != nil {
		t.Errorf("dir/out: %+v %d", e, len(hs))
	}
}

func TestReadManifestRejects(t *testing.T) {
	var good bytes.Buffer
	(&Manifest{BlockSize: 4096, Entries: []Entry{{Path: "a", Kind: KindFile, Size: 1}}, Hashes: [][]Hash{{{1}}}}).WriteTo(&good)
	encode := func(m *Manifest) []byte {
		var b bytes.Buffer
		m.WriteTo(&b)
		return b.Bytes()
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{name: "empty", b: nil},
		{name: "wrong magic", b: append([]byte("WCMX"), good.Bytes()[4:]...)},
		{name: "wrong version", b: append([]byte("WCMF\x02"), good.Bytes()[5:]...)},
		{name: "truncated", b: good.Bytes()[:good.Len()-3]},
		{name: "flipped body byte", b: func() []byte { b := bytes.Clone(good.Bytes()); b[len(b)-2] ^= 1; return b }()},
		{name: "escaping path", b: encode(&Manifest{BlockSize: 4096, Entries: []Entry{{Path: "../x", Kind: KindDir}}, Hashes: [][]Hash{nil}})},
		{name: "absolute path", b: encode(&Manifest{BlockSize: 4096, Entries: []Entry{{Path: "/etc", Kind: KindDir}}, Hashes: [][]Hash{nil}})},
		{name: "out of order", b: encode(&Manifest{BlockSize: 4096, Entries: []Entry{{Path: "b", Kind: KindDir}, {Path: "a", Kind: KindDir}}, Hashes: [][]Hash{nil, nil}})},
		{name: "hash count", b: encode(&Manifest{BlockSize: 4096, Entries: []Entry{{Path: "a", Kind: KindFile, Size: 5000}}, Hashes: [][]Hash{{{1}}}})},
		{name: "block size", b: encode(&Manifest{BlockSize: 0, Entries: nil})},
		{name: "unknown kind", b: encode(&Manifest{BlockSize: 4096, Entries: []Entry{{Path: "a", Kind: 9}}, Hashes: [][]Hash{nil}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadManifest(bytes.NewReader(tt.b))
			if !IsCorruptManifest(err) {
				t.Fatalf("ReadManifest: %v, want a corrupt manifest error", err)
			}
			t.Log(err)
		})
	}
}

func FuzzReadManifest(f *testing.F) {
	var b bytes.Buffer
	(&Manifest{BlockSize: 4096, Entries: []Entry{{Path: "a", Kind: KindDir}, {Path: "a/f", Kind: KindFile, Size: 5000, Nlink: 1}},
		Hashes: [][]Hash{nil, {{1}, {2}}}}).WriteTo(&b)
	f.Add(b.Bytes())
	f.Add([]byte("WCMF\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadManifest(bytes.NewReader(data))
		if err != nil {
			if !IsCorruptManifest(err) {
				t.Fatalf("error %v is not a corrupt manifest error", err)
			}
			return
		}
		var again bytes.Buffer
		if _, err := m.WriteTo(&again); err != nil {
			t.Fatal(err)
		}
		m2, err := ReadManifest(&again)
		if err != nil || !reflect.DeepEqual(m.Entries, m2.Entries) {
			t.Fatalf("a manifest read back differs: %v", err)
		}
	})
}

func TestCommon(t *testing.T) {
	h := func(b byte) Hash { return hashBlock([]byte{b}) }
	type ent struct {
		e  Entry
		hs []Hash
	}
	file := func(path string, nlink uint32, hs ...Hash) ent {
		return ent{Entry{Path: path, Kind: KindFile, Size: int64(len(hs)) * 4096, Nlink: nlink}, hs}
	}
	man := func(es ...ent) *Manifest {
		m := &Manifest{BlockSize: 4096}
		for _, e := range es {
			m.Entries = append(m.Entries, e.e)
			m.Hashes = append(m.Hashes, e.hs)
		}
		return m
	}
	link := ent{e: Entry{Path: "l", Kind: KindSymlink, Target: "x", Nlink: 1}}
	tests := []struct {
		name string
		ms   []*Manifest
		want *Manifest
	}{
		{
			name: "agreeing blocks stay, differing ones are unknown",
			ms: []*Manifest{
				man(file("a", 1, h(1), h(2), h(3))),
				man(file("a", 1, h(1), h(9), h(3))),
			},
			want: man(file("a", 1, h(1), Unknown, h(3))),
		},
		{
			name: "the shortest copy bounds the blocks",
			ms: []*Manifest{
				man(file("a", 1, h(1), h(2), h(3))),
				man(file("a", 1, h(1), h(2))),
			},
			want: man(file("a", 1, h(1), h(2))),
		},
		{
			name: "a path one side lacks or holds as another kind goes",
			ms: []*Manifest{
				man(file("a", 1, h(1)), file("b", 1, h(2)), link),
				man(ent{e: Entry{Path: "a", Kind: KindDir}}, link),
				man(file("a", 1, h(1)), file("b", 1, h(2)), link),
			},
			want: man(link),
		},
		{
			name: "another name on one side shows",
			ms: []*Manifest{
				man(file("a", 1, h(1))),
				man(file("a", 2, h(1))),
			},
			want: man(file("a", 2, h(1))),
		},
		{
			name: "symlinks to different targets go",
			ms: []*Manifest{
				man(link),
				man(ent{e: Entry{Path: "l", Kind: KindSymlink, Target: "y", Nlink: 1}}),
			},
			want: man(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Common(tt.ms...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Entries, tt.want.Entries) || !reflect.DeepEqual(got.Hashes, tt.want.Hashes) {
				t.Errorf("Common = %+v %v\nwant %+v %v", got.Entries, got.Hashes, tt.want.Entries, tt.want.Hashes)
			}
		})
	}
	if _, err := Common(&Manifest{BlockSize: 4096}, &Manifest{BlockSize: 8192}); err == nil {
		t.Error("Common of manifests with different block sizes: no error")
	}
	if Holds(Unknown, Unknown) {
		t.Error("Holds(Unknown, Unknown): a block nobody agrees on counts as held")
	}
}
