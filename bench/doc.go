// Package bench is the benchmark harness. Writers run in a child process:
// capture never sees the agent's own I/O, so a loop in the benchmarking
// process itself would measure nothing.
package bench
