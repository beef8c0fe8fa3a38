package capture

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/writecap/writecap/bpf"
)

// ring is what the reader needs from a platform frontend.
type ring interface {
	read(buf []byte, deadline time.Time) ([]byte, error)
	flush() error
	counters() ([cntMax]uint64, error)
	misses() (uint64, error)
	seqNow() (uint64, error)
	takeLosses(fn func(key lossKey, lo, hi int64)) error
	Close() error
}

// evbuf holds one raw sample. Buffers circulate between the reader and the
// processor so that the steady state allocates nothing.
type evbuf struct {
	b   []byte
	seq uint64
}

type evheap []*evbuf

func (h evheap) Len() int           { return len(h) }
func (h evheap) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h evheap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *evheap) Push(x any)        { *h = append(*h, x.(*evbuf)) }
func (h *evheap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// item is what the reader hands the processor: an event in sequence order,
// or a tick carrying the kernel's loss counters.
type item struct {
	ev     *evbuf
	tick   bool
	counts [cntMax]uint64
	misses uint64
	done   bool
}

const (
	bufSize = writeSize + int(bpf.CaptureLimitsCHUNK_L)
	// batchLen items cross to the processor at a time: one channel
	// operation per sample would cost more than the sample.
	batchLen = 128
)

type reader struct {
	k       ring
	out     chan []item
	batches chan []item
	cur     []item
	free    chan *evbuf
	poll    time.Duration
	next    uint64
	held    evheap
	ticks   int
	misses  uint64
}

// missEvery spaces out reading every program's statistics, one system call
// per program.
const missEvery = 50

func newReader(k ring, poll time.Duration, depth int) *reader {
	n := depth/batchLen + 1
	r := &reader{k: k, out: make(chan []item, n), batches: make(chan []item, n+2), free: make(chan *evbuf, depth+2*batchLen), poll: poll, next: 1}
	r.cur = make([]item, 0, batchLen)
	return r
}

func (r *reader) get() *evbuf {
	select {
	case b := <-r.free:
		return b
	default:
		return &evbuf{b: make([]byte, 0, bufSize)}
	}
}

// send queues an item, handing the batch on when it is full.
func (r *reader) send(it item) {
	r.cur = append(r.cur, it)
	if len(r.cur) == batchLen {
		r.push()
	}
}

func (r *reader) push() {
	if len(r.cur) == 0 {
		return
	}
	r.out <- r.cur
	select {
	case b := <-r.batches:
		r.cur = b[:0]
	default:
		r.cur = make([]item, 0, batchLen)
	}
}

func (r *reader) putBatch(b []item) {
	select {
	case r.batches <- b:
	default:
	}
}

func (r *reader) put(b *evbuf) {
	select {
	case r.free <- b:
	default:
	}
}

// run reads the ring until ctx ends, then drains what the kernel has
// submitted and sends a final done item.
func (r *reader) run(ctx context.Context) error {
	defer close(r.out)
	deadline := time.Now().Add(r.poll)
	stopping := false
	idle := 0
	eb := r.get()
	for {
		b, err := r.k.read(eb.b[:0], deadline)
		if err == nil {
			eb.b = b
			if cerr := checkEvent(b); cerr != nil {
				return fmt.Errorf("capture: ring record: %w", cerr)
			}
			eb.seq = hdrOf(b).Seq
			r.order(eb)
			eb = r.get()
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, ringbuf.ErrFlushed) {
			return fmt.Errorf("capture: read ring buffer: %w", err)
		}
		counts, err := r.k.counters()
		if err != nil {
			return err
		}
		if r.ticks++; r.ticks%missEvery == 0 || stopping {
			if r.misses, err = r.k.misses(); err != nil {
				return err
			}
		}
		r.send(item{tick: true, counts: counts, misses: r.misses})
		r.push()
		deadline = time.Now().Add(r.poll)
		if stopping {
			// A reserved sample not yet submitted leaves a gap; give it a
			// few polls, then hand on what is held rather than hang.
			if len(r.held) == 0 || idle > 20 {
				for len(r.held) > 0 {
					r.emit(heap.Pop(&r.held).(*evbuf))
				}
				r.send(item{done: true})
				r.push()
				return nil
			}
			idle++
			continue
		}
		select {
		case <-ctx.Done():
			stopping = true
			deadline = time.Now()
			if err := r.k.flush(); err != nil {
				return fmt.Errorf("capture: flush ring buffer: %w", err)
			}
		default:
		}
	}
}

// order releases samples in sequence order: the kernel takes a sequence
// number after reserving, so two CPUs can commit out of order.
func (r *reader) order(eb *evbuf) {
	if eb.seq != r.next {
		heap.Push(&r.held, eb)
		return
	}
	r.emit(eb)
	for len(r.held) > 0 && r.held[0].seq == r.next {
		r.emit(heap.Pop(&r.held).(*evbuf))
	}
}

func (r *reader) emit(eb *evbuf) {
	r.next = eb.seq + 1
	r.send(item{ev: eb})
}
