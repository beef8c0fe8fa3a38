package resync

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestProgressFigures(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	sampleTree(t, src)
	p := &Progress{}
	st := syncT(t, src, dst, Options{Progress: p})
	r := p.Read()
	if r.FilesDone != r.FilesTotal || r.FilesTotal != 6 || r.BytesDone != r.BytesTotal || r.BytesSent != st.BytesSent {
		t.Errorf("progress after a sync: %+v (stats %+v)", r, st)
	}
	want := `
# HELP writecap_sync_bytes_sent Bytes that had to cross: data and hashes.
# TYPE writecap_sync_bytes_sent gauge
writecap_sync_bytes_sent{op="sync"} ` + strconv.FormatInt(st.BytesSent, 10) + "\n"
	if err := testutil.CollectAndCompare(p.Collector("sync"), strings.NewReader(want), "writecap_sync_bytes_sent"); err != nil {
		t.Error(err)
	}

	// Not on a terminal: plain lines, the last when it ends.
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Show(ctx, &out, false, "sync", time.Hour)
	if !strings.HasPrefix(out.String(), "sync: ") || !strings.Contains(out.String(), "6 of 6 files") {
		t.Errorf("progress line %q", out.String())
	}
}
