package bench

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// EmptyHooks attaches a program that does nothing to each raw syscall
// tracepoint capture uses. That is the floor any capture built on syscall
// tracepoints pays: once a program is attached there, every syscall of every
// task takes the kernel's traced slow path. The returned function detaches.
func EmptyHooks() (func() error, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "empty_hook",
		Type:         ebpf.RawTracepoint,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("bench: load empty program: %w", err)
	}
	var links []link.Link
	detach := func() error {
		var errs []error
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		return errors.Join(append(errs, prog.Close())...)
	}
	for _, tp := range []string{"sys_enter", "sys_exit"} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
		if err != nil {
			detach()
			return nil, fmt.Errorf("bench: attach empty program to %s: %w", tp, err)
		}
		links = append(links, l)
	}
	return detach, nil
}
