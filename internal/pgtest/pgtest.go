// Package pgtest runs a real PostgreSQL (Debian's packages) for tests and
// benchmarks: initdb, pg_ctl, pgbench and psql as the postgres user.
package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// PG runs PostgreSQL's tools as the postgres user.
type PG struct {
	bin      string
	UID, GID int
}

// Find locates PostgreSQL, skipping when it is missing unless
// WRITECAP_REQUIRE_BPF=1 demands every test run.
func Find(tb testing.TB) *PG {
	tb.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	u, err := user.Lookup("postgres")
	if len(dirs) == 0 || err != nil {
		if os.Getenv("WRITECAP_REQUIRE_BPF") == "1" {
			tb.Fatal("PostgreSQL is not installed (.ci/run installs it): apt-get install -y postgresql postgresql-contrib")
		}
		tb.Skip("PostgreSQL not installed")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &PG{bin: dirs[len(dirs)-1], UID: uid, GID: gid}
}

// Run runs tool with args and returns its output.
func (p *PG) Run(tb testing.TB, tool string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, tool)}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Start starts a server on data, listening on a socket in sock only.
func (p *PG) Start(tb testing.TB, data, sock string, port int) {
	tb.Helper()
	p.Run(tb, "pg_ctl", "-D", data, "-w", "-l", filepath.Join(sock, fmt.Sprintf("log%d", port)),
		"-o", fmt.Sprintf("-k %s -p %d -c listen_addresses=''", sock, port), "start")
}

// Stop shuts the server on data down cleanly.
func (p *PG) Stop(tb testing.TB, data string) {
	tb.Helper()
	p.Run(tb, "pg_ctl", "-D", data, "-w", "-m", "fast", "stop")
}

// Sum is pgbench's sum(abalance): the same on two copies of one database.
func (p *PG) Sum(tb testing.TB, sock string, port int) string {
	tb.Helper()
	return strings.TrimSpace(p.Run(tb, "psql", "-h", sock, "-p", strconv.Itoa(port), "-d", "postgres", "-Atc",
		"select sum(abalance) from pgbench_accounts"))
}

// SharedDir makes a directory the postgres user can reach.
func (p *PG) SharedDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "writecap-pg")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Own gives dirs to the postgres user.
func (p *PG) Own(tb testing.TB, dirs ...string) {
	tb.Helper()
	for _, d := range dirs {
		if err := os.Chown(d, p.UID, p.GID); err != nil {
			tb.Fatal(err)
		}
	}
}

// TPS reads the throughput line of pgbench's report.
func TPS(out string) (float64, bool) {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "tps" && f[1] == "=" {
			v, err := strconv.ParseFloat(f[2], 64)
			return v, err == nil
		}
	}
	return 0, false
}
