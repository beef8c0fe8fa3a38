// Package e2e holds the privileged end-to-end tests: the writecap binary
// runs as a separate process against real directories, the real kernel and a
// real PostgreSQL. They need root and a kernel that loads BPF; they skip
// elsewhere unless WRITECAP_REQUIRE_BPF=1, which turns every skip into a
// failure.
package e2e
