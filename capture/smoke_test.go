package capture

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/writecap/writecap/journal"
)

type memSink struct{ recs []journal.Record }

func (m *memSink) Write(recs []journal.Record) error {
	for _, r := range recs {
		r.Data = append([]byte(nil), r.Data...)
		m.recs = append(m.recs, r)
	}
	return nil
}

func TestSmoke(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "pre"), []byte("hello"), 0644)
	s, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	sink := &memSink{}
	done := make(chan error)
	go func() { done <- s.Run(ctx, sink) }()
	out, err := exec.Command("sh", "-c", "cd "+root+" && echo abc > a && mkdir d && mv a d/b && echo xyz >> d/b && sync d/b && ln d/b c && ln -s d/b s && chmod 600 c && truncate -s 2 d/b && rm c && mv d e && cp e/b f").CombinedOutput()
	if err != nil {
		t.Fatal(err, string(out))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, r := range sink.recs {
		t.Log(r.String(), string(r.Data))
	}
	t.Logf("%+v", s.Stats())
	c, _ := s.k.counters()
	t.Logf("counters %v", c)
}
