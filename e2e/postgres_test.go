package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/writecap/writecap/internal/pgtest"
	"github.com/writecap/writecap/internal/treecmp"
)

// TestPostgres: initdb and pgbench on the source while mirror runs; the
// target must be byte-identical and a PostgreSQL started on it must return
// the same sum(abalance).
func TestPostgres(t *testing.T) {
	requireBPF(t)
	p := pgtest.Find(t)
	base := p.SharedDir(t)
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	var m *agent
	want := pgbench(t, p, base, src, func() { m = startMirror(t, src, dst) })
	m.stop(t)
	checkPG(t, p, base, src, dst, want)
}

// TestPostgresReplica: the same with master and replica processes over
// loopback TLS.
func TestPostgresReplica(t *testing.T) {
	requireBPF(t)
	p := pgtest.Find(t)
	base := p.SharedDir(t)
	pr := newPairIn(t, base)
	var rep, m *agent
	want := pgbench(t, p, base, pr.src, func() {
		rep = pr.replica()
		m = pr.master()
	})
	m.stop(t)
	rep.stop(t)
	checkPG(t, p, base, pr.src, pr.dst, want)
}

// bench starts replication, then initdb, pgbench -i -s 10 and pgbench -c 4
// under src, and returns sum(abalance) after a clean shutdown.
func pgbench(t *testing.T, p *pgtest.PG, base, src string, start func()) string {
	t.Helper()
	seconds := "60"
	if s := os.Getenv("WRITECAP_PGBENCH_SECONDS"); s != "" {
		seconds = s
	}
	sock := filepath.Join(base, "sock")
	if err := os.Mkdir(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	p.Own(t, src, sock)
	start()
	data := filepath.Join(src, "pgdata")
	p.Run(t, "initdb", "-D", data, "--no-locale", "-E", "UTF8")
	p.Start(t, data, sock, 54391)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			p.Run(t, "pg_ctl", "-D", data, "-m", "immediate", "stop")
		}
	})
	p.Run(t, "pgbench", "-h", sock, "-p", "54391", "-i", "-s", "10", "postgres")
	out := p.Run(t, "pgbench", "-h", sock, "-p", "54391", "-c", "4", "-T", seconds, "postgres")
	t.Logf("pgbench: %s", lastLines(out, 3))
	want := p.Sum(t, sock, 54391)
	p.Stop(t, data)
	stopped = true
	return want
}

// check requires dst identical to src and a PostgreSQL on dst to answer
// sum(abalance) = want.
func checkPG(t *testing.T, p *pgtest.PG, base, src, dst, want string) {
	t.Helper()
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true, Ignore: []string{"pgdata/postmaster.pid"}})
	if t.Failed() {
		return
	}
	sock := filepath.Join(base, "sock")
	replica := filepath.Join(dst, "pgdata")
	p.Start(t, replica, sock, 54392)
	got := p.Sum(t, sock, 54392)
	p.Stop(t, replica)
	if got != want {
		t.Fatalf("sum(abalance) on the replica = %s, on the master = %s", got, want)
	}
	t.Logf("sum(abalance) = %s on both", got)
}
