// Package bpf holds the eBPF programs that capture writes and the Go
// bindings bpf2go generates for them. The generated objects are committed so
// that building writecap needs no clang.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type ev_hdr -type ev_write -type ev_meta -type ev_type -type loss_key -type loss_val -type counter -type limits -type ev_flag Capture capture.bpf.c -- -I.
