package capture

import (
	"context"
	"sync"
)

// marks are callers waiting for capture to reach a point in time.
type marks struct {
	mu      sync.Mutex
	waiting []markWait
}

type markWait struct {
	kseq uint64 // every change the kernel numbered below this
	seq  chan uint64
}

// Mark waits until every change completed before the call has been turned
// into records and handed to the sink, and returns the last record's seq:
// what a sink holds up to it includes every such change. When capture
// cannot tell (a change lost in the kernel keeps its number unseen), it
// answers at ctx's end with what it has processed and false.
func (s *Source) Mark(ctx context.Context) (uint64, bool, error) {
	k, err := s.k.seqNow()
	if err != nil {
		return 0, false, err
	}
	w := markWait{kseq: k, seq: make(chan uint64, 1)}
	s.marks.mu.Lock()
	s.marks.waiting = append(s.marks.waiting, w)
	s.marks.mu.Unlock()
	select {
	case seq := <-w.seq:
		return seq, true, nil
	case <-ctx.Done():
	}
	s.marks.mu.Lock()
	defer s.marks.mu.Unlock()
	for i := range s.marks.waiting {
		if s.marks.waiting[i].seq == w.seq {
			s.marks.waiting = append(s.marks.waiting[:i], s.marks.waiting[i+1:]...)
			break
		}
	}
	select {
	case seq := <-w.seq:
		return seq, true, nil
	default:
	}
	return s.lastSeq.Load(), false, nil
}

// answerMarks answers the marks whose changes have all been processed.
func (p *processor) answerMarks() error {
	p.s.marks.mu.Lock()
	defer p.s.marks.mu.Unlock()
	if len(p.s.marks.waiting) == 0 {
		return nil
	}
	if err := p.flush(); err != nil {
		return err
	}
	keep := p.s.marks.waiting[:0]
	for _, w := range p.s.marks.waiting {
		if p.kseq+1 >= w.kseq {
			w.seq <- p.seq
			continue
		}
		keep = append(keep, w)
	}
	p.s.marks.waiting = keep
	return nil
}
