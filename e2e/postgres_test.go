package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/writecap/writecap/internal/treecmp"
)

// pg runs PostgreSQL's tools as the postgres user.
type pg struct {
	bin      string
	uid, gid int
}

func findPG(t *testing.T) *pg {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	u, err := user.Lookup("postgres")
	if len(dirs) == 0 || err != nil {
		if os.Getenv("WRITECAP_REQUIRE_BPF") == "1" {
			t.Fatal("PostgreSQL is not installed (.ci/run installs it): apt-get install -y postgresql postgresql-contrib")
		}
		t.Skip("PostgreSQL not installed")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &pg{bin: dirs[len(dirs)-1], uid: uid, gid: gid}
}

func (p *pg) run(t *testing.T, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, tool)}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (p *pg) start(t *testing.T, data, sock string, port int) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", data, "-w", "-l", filepath.Join(sock, fmt.Sprintf("log%d", port)),
		"-o", fmt.Sprintf("-k %s -p %d -c listen_addresses=''", sock, port), "start")
}

func (p *pg) stop(t *testing.T, data string) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", data, "-w", "-m", "fast", "stop")
}

func (p *pg) sum(t *testing.T, sock string, port int) string {
	t.Helper()
	return strings.TrimSpace(p.run(t, "psql", "-h", sock, "-p", strconv.Itoa(port), "-d", "postgres", "-Atc",
		"select sum(abalance) from pgbench_accounts"))
}

// sharedDir makes a directory the postgres user can reach.
func sharedDir(t *testing.T, p *pg) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "writecap-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPostgres: initdb and pgbench on the source while mirror runs; the
// target must be byte-identical and a PostgreSQL started on it must return
// the same sum(abalance).
func TestPostgres(t *testing.T) {
	requireBPF(t)
	p := findPG(t)
	base := sharedDir(t, p)
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	var m *agent
	want := p.bench(t, base, src, func() { m = startMirror(t, src, dst) })
	m.stop(t)
	p.check(t, base, src, dst, want)
}

// TestPostgresReplica: the same with master and replica processes over
// loopback TLS.
func TestPostgresReplica(t *testing.T) {
	requireBPF(t)
	p := findPG(t)
	base := sharedDir(t, p)
	pr := newPairIn(t, base)
	var rep, m *agent
	want := p.bench(t, base, pr.src, func() {
		rep = pr.replica()
		m = pr.master()
	})
	m.stop(t)
	rep.stop(t)
	p.check(t, base, pr.src, pr.dst, want)
}

// bench starts replication, then initdb, pgbench -i -s 10 and pgbench -c 4
// under src, and returns sum(abalance) after a clean shutdown.
func (p *pg) bench(t *testing.T, base, src string, start func()) string {
	t.Helper()
	seconds := "60"
	if s := os.Getenv("WRITECAP_PGBENCH_SECONDS"); s != "" {
		seconds = s
	}
	sock := filepath.Join(base, "sock")
	if err := os.Mkdir(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{src, sock} {
		if err := os.Chown(d, p.uid, p.gid); err != nil {
			t.Fatal(err)
		}
	}
	start()
	data := filepath.Join(src, "pgdata")
	p.run(t, "initdb", "-D", data, "--no-locale", "-E", "UTF8")
	p.start(t, data, sock, 54391)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			p.run(t, "pg_ctl", "-D", data, "-m", "immediate", "stop")
		}
	})
	p.run(t, "pgbench", "-h", sock, "-p", "54391", "-i", "-s", "10", "postgres")
	out := p.run(t, "pgbench", "-h", sock, "-p", "54391", "-c", "4", "-T", seconds, "postgres")
	t.Logf("pgbench: %s", lastLines(out, 3))
	want := p.sum(t, sock, 54391)
	p.stop(t, data)
	stopped = true
	return want
}

// check requires dst identical to src and a PostgreSQL on dst to answer
// sum(abalance) = want.
func (p *pg) check(t *testing.T, base, src, dst, want string) {
	t.Helper()
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true, Ignore: []string{"pgdata/postmaster.pid"}})
	if t.Failed() {
		return
	}
	sock := filepath.Join(base, "sock")
	replica := filepath.Join(dst, "pgdata")
	p.start(t, replica, sock, 54392)
	got := p.sum(t, sock, 54392)
	p.stop(t, replica)
	if got != want {
		t.Fatalf("sum(abalance) on the replica = %s, on the master = %s", got, want)
	}
	t.Logf("sum(abalance) = %s on both", got)
}
