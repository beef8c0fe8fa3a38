package master

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/stream"
)

// refuser is a replica that cannot give its manifest.
type refuser struct{}

func (refuser) Manifest(context.Context, *stream.ManifestRequest, func([]byte) error) error {
	return errors.New("no manifest here")
}

// entering tells when a replica is asked for its manifest.
type entering struct {
	stream.Peer
	asked *sync.WaitGroup
}

func (e entering) Manifest(ctx context.Context, req *stream.ManifestRequest, part func([]byte) error) error {
	e.asked.Done()
	return e.Peer.Manifest(ctx, req, part)
}

// TestResumeHeld: after a restart, the repair of the earlier master's
// changes is sent against what every replica taking it holds, and a
// replica it was not made against is told to start over from a copy.
func TestResumeHeld(t *testing.T) {
	file := func(hs ...resync.Hash) *resync.Manifest {
		return &resync.Manifest{BlockSize: resync.DefaultBlockSize,
			Entries: []resync.Entry{{Path: "db", Kind: resync.KindFile, Size: int64(len(hs)) * resync.DefaultBlockSize, Nlink: 1}},
			Hashes:  [][]resync.Hash{hs}}
	}
	a, b := file(resync.Hash{1}, resync.Hash{2}), file(resync.Hash{1}, resync.Hash{3})
	// Each replica either describes what it holds (peer), passes (it
	// starts over from a copy) or never connects (neither).
	type replica struct {
		peer stream.Peer
		pass bool
	}
	tests := []struct {
		name      string
		replicas  []replica
		want      *resync.Manifest // what the repair is sent against; nil: whole
		takes     []bool
		late      bool // ResumeWait passes (once every replica that connects was asked)
		wantErr   bool
		lateTakes bool // a replica that never connected, once decided
	}{
		{
			name:     "two replicas: what both hold",
			replicas: []replica{{peer: holder{a}}, {peer: holder{b}}},
			want:     file(resync.Hash{1}, resync.Unknown),
			takes:    []bool{true, true},
		},
		{
			name:     "one replica: what it holds",
			replicas: []replica{{peer: holder{a}}},
			want:     a,
			takes:    []bool{true},
		},
		{
			name:     "a replica starting over from a copy is not waited for",
			replicas: []replica{{peer: holder{a}}, {pass: true}},
			want:     a,
			takes:    []bool{true, false},
		},
		{
			name:      "a replica that does not connect in time starts over later",
			replicas:  []replica{{peer: holder{b}}, {}},
			late:      true,
			want:      b,
			takes:     []bool{true, false},
			lateTakes: false,
		},
		{
			name:      "a replica that cannot say sends the files whole, to every replica",
			replicas:  []replica{{peer: holder{a}}, {peer: refuser{}}, {}},
			late:      true,
			wantErr:   true,
			want:      nil,
			takes:     []bool{true, true, true},
			lateTakes: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Master{cfg: Config{BlockSize: resync.DefaultBlockSize}}
			m.q = &queue{m: m, ask: newHeldAsk(len(tt.replicas))}
			ctx := context.Background()
			// When it passes, ResumeWait does once every replica that
			// connects was asked: those are waited for past it, the
			// others not. Otherwise a wait for a replica that passed
			// never ends.
			var wg, asked sync.WaitGroup
			deadline := make(chan time.Time)
			takes := make([]bool, len(tt.replicas))
			late := -1
			for id, r := range tt.replicas {
				switch {
				case r.peer != nil:
					asked.Add(1)
					wg.Go(func() {
						ok, err := m.q.describe(ctx, id, entering{r.peer, &asked})
						if err != nil {
							t.Errorf("replica %d: %v", id, err)
						}
						takes[id] = ok
					})
				case r.pass:
					m.q.ask.pass(id)
				default:
					late = id
				}
			}
			if tt.late {
				go func() {
					asked.Wait()
					close(deadline)
				}()
			}
			got, _, err := m.q.ask.decide([]string{"db"}, deadline)
			if (err != nil) != tt.wantErr {
				t.Errorf("decide: error %v", err)
			}
			close(m.q.ask.decided)
			wg.Wait()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("repair sent against %+v, want %+v", got, tt.want)
			}
			if late >= 0 {
				ok, err := m.q.describe(ctx, late, holder{a})
				if err != nil {
					t.Fatal(err)
				}
				takes[late] = ok
				if ok != tt.lateTakes {
					t.Errorf("replica connecting after the decision takes the repair: %v, want %v", ok, tt.lateTakes)
				}
			}
			for id, r := range tt.replicas {
				if r.peer != nil && takes[id] != tt.takes[id] {
					t.Errorf("replica %d takes the repair: %v, want %v", id, takes[id], tt.takes[id])
				}
			}
		})
	}
}
