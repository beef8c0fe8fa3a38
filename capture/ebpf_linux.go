package capture

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/bpf"
)

// kernel is the loaded and attached BPF side of a Source.
type kernel struct {
	coll   *ebpf.Collection
	links  []link.Link
	ring   *ringbuf.Reader
	counts *ebpf.Map
	// The loss map in slot takes the ranges lost now; takeLosses swaps
	// in the other and reads the one retired.
	slot *ebpf.Map
	loss [2]*ebpf.Map
	cur  int
}

var _ ring = (*kernel)(nil)

// kernelDev converts a stat(2) device number to the kernel's internal dev_t,
// which is what BPF reads from super_block.s_dev.
func kernelDev(dev uint64) uint64 {
	return uint64(unix.Major(dev))<<20 | uint64(unix.Minor(dev))
}

func loadKernel(roots []string, cfg Config) (*kernel, error) {
	if len(roots) == 0 || len(roots) > maxRoots {
		return nil, fmt.Errorf("capture: %d roots given, between 1 and %d supported", len(roots), maxRoots)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("capture: remove memlock limit: %w", err)
	}
	spec, err := bpf.LoadCapture()
	if err != nil {
		return nil, fmt.Errorf("capture: load BPF spec: %w", err)
	}
	var rc [maxRoots]bpf.CaptureRootCfg
	for i, r := range roots {
		var st unix.Stat_t
		if err := unix.Stat(r, &st); err != nil {
			return nil, fmt.Errorf("capture: root %s: %w", r, err)
		}
		if len(r) >= len(rc[i].Path) {
			return nil, fmt.Errorf("capture: root %s: path longer than %d bytes", r, len(rc[i].Path)-1)
		}
		rc[i].Dev = kernelDev(st.Dev)
		rc[i].Ino = st.Ino
		rc[i].Len = uint32(len(r))
		for j := 0; j < len(r); j++ {
			rc[i].Path[j] = int8(r[j])
		}
	}
	set := map[string]any{
		"self_tgid":    uint32(os.Getpid()),
		"nroots":       uint32(len(roots)),
		"max_data":     uint64(cfg.MaxData),
		"wakeup_bytes": uint64(cfg.RingSize / 4),
		"roots":        rc,
	}
	for name, v := range set {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("capture: set %s: %w", name, err)
		}
	}
	spec.Maps["events"].MaxEntries = uint32(cfg.RingSize)

	k := &kernel{}
	if k.coll, err = ebpf.NewCollection(spec); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("capture: BPF verifier rejected the programs: %+v", ve)
		}
		return nil, fmt.Errorf("capture: load BPF programs (root and a kernel with BTF are required): %w", err)
	}
	if err := k.attach(spec); err != nil {
		k.Close()
		return nil, err
	}
	k.counts, k.slot = k.coll.Maps["counters"], k.coll.Maps["loss_slot"]
	k.loss = [2]*ebpf.Map{k.coll.Maps["losses_a"], k.coll.Maps["losses_b"]}
	k.ring, err = ringbuf.NewReader(k.coll.Maps["events"])
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("capture: open ring buffer: %w", err)
	}
	return k, nil
}

type hook struct{ prog, tracepoint string }

// attached names the programs attached to a raw tracepoint of their own, in
// the order they are attached (entries before exits); every other program
// is a syscall's handler, reached by a tail call.
var attached = []hook{
	{"dispatch_enter", "sys_enter"},
	{"dispatch_exit", "sys_exit"},
	{"uring_submit", "io_uring_submit_req"},
	{"uring_complete", "io_uring_complete"},
	{"uring_overflow", "io_uring_cqe_overflow"},
}

// attach fills the tail-call tables with one handler per syscall, then
// attaches the dispatchers and the io_uring programs.
func (k *kernel) attach(spec *ebpf.CollectionSpec) error {
	tables := map[string]*ebpf.Map{"enter_": k.coll.Maps["enter_calls"], "exit_": k.coll.Maps["exit_calls"]}
	for name, prog := range k.coll.Programs {
		if slices.ContainsFunc(attached, func(h hook) bool { return h.prog == name }) {
			continue
		}
		dir, sc, _ := strings.Cut(name, "_")
		nr, ok := syscallNumbers[sc]
		table := tables[dir+"_"]
		if !ok || table == nil {
			return fmt.Errorf("capture: program %s handles no known syscall", name)
		}
		if err := table.Put(nr, prog); err != nil {
			return fmt.Errorf("capture: install %s for syscall %d: %w", name, nr, err)
		}
	}
	for _, h := range attached {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.tracepoint, Program: k.coll.Programs[h.prog]})
		if err != nil {
			return fmt.Errorf("capture: attach raw tracepoint %s: %w", h.tracepoint, err)
		}
		k.links = append(k.links, l)
	}
	return nil
}

func (k *kernel) read(buf []byte, deadline time.Time) ([]byte, error) {
	k.ring.SetDeadline(deadline)
	rec := ringbuf.Record{RawSample: buf}
	err := k.ring.ReadInto(&rec)
	return rec.RawSample, err
}

func (k *kernel) flush() error { return k.ring.Flush() }

func (k *kernel) counters() ([cntMax]uint64, error) {
	var out [cntMax]uint64
	var per []uint64
	for i := uint32(0); i < uint32(cntMax); i++ {
		if err := k.counts.Lookup(i, &per); err != nil {
			return out, fmt.Errorf("capture: read counter %d: %w", i, err)
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out, nil
}

// seqNow is the sequence number the kernel will give the next event.
func (k *kernel) seqNow() (uint64, error) {
	var v uint64
	if err := k.coll.Variables["seq_next"].Get(&v); err != nil {
		return 0, fmt.Errorf("capture: read kernel sequence: %w", err)
	}
	return v, nil
}

// misses sums, over all programs, the runs the kernel skipped because another
// BPF program was already running on that CPU: each is an unseen change.
func (k *kernel) misses() (uint64, error) {
	var total uint64
	for name, p := range k.coll.Programs {
		st, err := p.Stats()
		if err != nil {
			return 0, fmt.Errorf("capture: stats of program %s: %w", name, err)
		}
		total += st.RecursionMisses
	}
	return total, nil
}

// takeLosses gives the ranges lost since it last ran, merged across CPUs,
// by inode. Swapping the slot waits for the programs that may still write to
// the retired map, so it is read whole and emptied for its next turn.
func (k *kernel) takeLosses(fn func(key lossKey, lo, hi int64)) error {
	old := k.loss[k.cur]
	if err := k.slot.Update(uint32(0), k.loss[1-k.cur], ebpf.UpdateAny); err != nil {
		return fmt.Errorf("capture: swap loss maps: %w", err)
	}
	k.cur = 1 - k.cur
	var (
		key  bpf.CaptureLossKey
		per  []bpf.CaptureLossVal
		keys []bpf.CaptureLossKey
	)
	it := old.Iterate()
	for it.Next(&key, &per) {
		keys = append(keys, key)
		var lo, hi int64
		set := false
		for _, v := range per {
			if v.Count == 0 {
				continue
			}
			if !set || v.Lo < lo {
				lo = v.Lo
			}
			if !set || v.Hi > hi {
				hi = v.Hi
			}
			set = true
		}
		if set {
			fn(key, lo, hi)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("capture: read loss map: %w", err)
	}
	for _, key := range keys {
		if err := old.Delete(&key); err != nil {
			return fmt.Errorf("capture: empty loss map: %w", err)
		}
	}
	return nil
}

func (k *kernel) Close() error {
	for _, l := range k.links {
		l.Close()
	}
	if k.ring != nil {
		k.ring.Close()
	}
	if k.coll != nil {
		k.coll.Close()
	}
	return nil
}
