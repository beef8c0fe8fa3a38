package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/writecap/writecap/internal/treecmp"
	"github.com/writecap/writecap/internal/workload"
	"github.com/writecap/writecap/monitor"
)

// pair is a master and a replica on loopback, as separate processes.
type pair struct {
	t                        *testing.T
	certs                    string
	src, dst, outside        string
	mstate, rstate           string
	listen, mmetric, rmetric string
	node                     string // the replica's identity
	masterArgs               []string
}

func newPair(t *testing.T, masterArgs ...string) *pair {
	t.Helper()
	return newPairIn(t, t.TempDir(), masterArgs...)
}

// newPairIn makes the trees beneath base.
func newPairIn(t *testing.T, base string, masterArgs ...string) *pair {
	t.Helper()
	p := &pair{
		t: t, certs: filepath.Join(base, "certs"),
		src: filepath.Join(base, "src"), dst: filepath.Join(base, "dst"), outside: filepath.Join(base, "outside"),
		mstate: filepath.Join(base, "mstate"), rstate: filepath.Join(base, "rstate"),
		listen: freeAddr(t), mmetric: freeAddr(t), rmetric: freeAddr(t), node: "replica", masterArgs: masterArgs,
	}
	for _, d := range []string{p.src, p.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The initial copy has something to carry.
	if err := os.WriteFile(filepath.Join(p.src, "before"), []byte("present at start"), 0o640); err != nil {
		t.Fatal(err)
	}
	makeCerts(t, p.certs, "master", "replica")
	return p
}

func makeCerts(t *testing.T, dir string, nodes ...string) {
	t.Helper()
	args := []string{"certs", "--dir", dir}
	for _, n := range nodes {
		args = append(args, "--node", n)
	}
	if out, err := exec.Command(binary, args...).CombinedOutput(); err != nil {
		t.Fatalf("writecap certs: %v\n%s", err, out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tlsArgs(dir, node string) []string {
	return []string{"--ca", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, node+".crt"),
		"--key", filepath.Join(dir, node+".key"), "--name", node}
}

func (p *pair) replica() *agent {
	p.t.Helper()
	args := append([]string{"replica", "--listen", p.listen, "--root", p.dst, "--state", p.rstate,
		"--metrics", p.rmetric, "--master", "master"}, tlsArgs(p.certs, p.node)...)
	return startAgent(p.t, args...)
}

func (p *pair) master() *agent {
	p.t.Helper()
	args := append([]string{"master", "--source", p.src, "--replica", p.listen, "--replica-name", "replica",
		"--state", p.mstate, "--metrics", p.mmetric}, tlsArgs(p.certs, "master")...)
	return startAgent(p.t, append(args, p.masterArgs...)...)
}

func (p *pair) workload(seed int64, ops int) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := workload.Run(context.Background(), p.src, workload.Options{
			Seed: seed, Threads: 4, OpsPerThread: ops, MaxWrite: 1 << 20, Outside: p.outside,
		})
		done <- err
	}()
	return done
}

func (p *pair) compare() {
	p.t.Helper()
	treecmp.AssertEqual(p.t, p.src, p.dst, treecmp.Options{Owners: true})
}

// status reads an agent's status document.
func status(t *testing.T, addr string) *monitor.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := monitor.Fetch(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor polls an agent's status until cond holds. Status is the signal:
// there is no event to wait on across processes.
func waitFor(t *testing.T, addr, what string, cond func(*monitor.Report) bool) *monitor.Report {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := status(t, addr)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s; status: %+v", what, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads one sample from an agent's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric %s: %q: %v", name, line, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not served by %s", name, addr)
	return 0
}

func applied(r *monitor.Report) uint64 { return r.Scenarios[0].Applied }

// TestReplicate: master and replica over loopback with a randomized
// workload; identical trees after the master drains; status and metrics
// report the session.
func TestReplicate(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	rep := p.replica()
	m := p.master()
	if err := <-p.workload(11, 1500); err != nil {
		t.Fatal(err)
	}
	ms := status(t, p.mmetric)
	if len(ms.Scenarios) != 1 || len(ms.Scenarios[0].Peers) != 1 || !ms.Scenarios[0].Peers[0].Connected {
		t.Fatalf("master status does not show the connected replica: %+v", ms)
	}
	out, err := exec.Command(binary, "status", "--addr", p.mmetric).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "replica "+p.listen) || !strings.Contains(string(out), "connected") {
		t.Fatalf("writecap status: %v\n%s", err, out)
	}
	t.Logf("writecap status:\n%s", out)
	m.stop(t)
	rs := status(t, p.rmetric)
	if got := metric(t, p.rmetric, "writecap_replica_resets_total"); got != 1 {
		t.Errorf("replica was rebuilt %v times, want once (the initial copy)", got)
	}
	rep.stop(t)
	p.compare()
	if rs.Scenarios[0].State != "waiting" {
		t.Errorf("replica state after the master left = %q, want waiting", rs.Scenarios[0].State)
	}
}

// TestReplicaKilled: the replica is killed with SIGKILL and restarted
// several times under load; it resumes from its durable spool each time
// (never rebuilt) and the trees end identical.
func TestReplicaKilled(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	rep := p.replica()
	m := p.master()
	done := p.workload(12, 2000)
	var last uint64
	for i := range 3 {
		r := waitFor(t, p.rmetric, "the replica to apply more in a session", func(r *monitor.Report) bool {
			return applied(r) > last && r.Scenarios[0].State == "connected"
		})
		last = applied(r)
		rep.kill(t)
		rep = p.replica()
		t.Logf("kill %d: replica had applied #%d", i+1, last)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.mmetric, "the master to see the replica again", func(r *monitor.Report) bool {
		return r.Scenarios[0].Peers[0].Connected
	})
	if got := metric(t, p.mmetric, "writecap_master_reconnects_total"); got < 3 {
		t.Errorf("master counted %v reconnects, want at least 3", got)
	}
	m.stop(t)
	// The last replica process only ever resumed: a rebuild would show.
	if got := metric(t, p.rmetric, "writecap_replica_resets_total"); got != 0 {
		t.Errorf("restarted replica was rebuilt %v times; it should resume from its spool", got)
	}
	rep.stop(t)
	p.compare()
}

// TestMasterKilled: the master agent is killed with SIGKILL mid-workload,
// which goes on while no master runs, and is restarted: from its activity
// record and the change times of what changed meanwhile it repairs the
// replica, which keeps its data (no rebuild).
func TestMasterKilled(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	rep := p.replica()
	m := p.master()
	done := p.workload(13, 2000)
	waitFor(t, p.rmetric, "the replica to apply something", func(r *monitor.Report) bool { return applied(r) > 100 })
	m.kill(t)
	m = p.master()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.mmetric, "the replica to join the new master", func(r *monitor.Report) bool {
		return r.Scenarios[0].Peers[0].Connected
	})
	if got := metric(t, p.mmetric, "writecap_master_replica_repairs_total"); got != 1 {
		t.Errorf("restarted master repaired %v replicas of its predecessor, want 1", got)
	}
	m.stop(t)
	if got := metric(t, p.rmetric, "writecap_replica_resets_total"); got != 1 {
		t.Errorf("replica rebuilt %v times, want 1 (the first start only)", got)
	}
	if got := metric(t, p.rmetric, "writecap_replica_repairs_total"); got != 1 {
		t.Errorf("replica repaired by a new master %v times, want 1", got)
	}
	rep.stop(t)
	p.compare()
}

// TestMasterKilledBlocks: a master killed, and a large file written in a
// few places while it is down; the new master finds the file changed but
// not where, and repairs it against the replica's manifest of it, so only
// the blocks that differ cross.
func TestMasterKilledBlocks(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	const size = 64 << 20
	writeStale(t, filepath.Join(p.src, "db"), filepath.Join(p.outside, "db"), 7, size)
	rep := p.replica()
	m := p.master()
	waitCopied(t, p, p.mmetric, "db", size)
	m.kill(t)
	scatter(t, filepath.Join(p.src, "db"), size)
	m = p.master()
	waitFor(t, p.mmetric, "the replica to join the new master", func(r *monitor.Report) bool {
		return r.Scenarios[0].Peers[0].Connected
	})
	m.stop(t)
	if got := metric(t, p.rmetric, "writecap_replica_repairs_total"); got != 1 {
		t.Errorf("replica repaired by a new master %v times, want 1", got)
	}
	rep.stop(t)
	p.compare()
	assertRepairedBlocks(t, m, size)
}

// TestMasterKilledTwoReplicas: the master is killed while one of its two
// replicas is behind the other, and the file both hold changes before it
// comes back. The repair is one stream both take, so it goes against what
// they both hold: blocks the replica ahead has and the one behind lacks are
// sent too, and the rest of the file is not.
func TestMasterKilledTwoReplicas(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	p2 := p.second()
	const size = 64 << 20
	db := filepath.Join(p.src, "db")
	writeStale(t, db, filepath.Join(p.outside, "db"), 7, size)
	r1, r2 := p.replica(), p2.replica()
	cfg := p.twoReplicaConfig(p2)
	m := startAgent(t, "master", "--config", cfg)
	for _, q := range []*pair{p, p2} {
		waitCopied(t, q, p.mmetric, "db", size)
	}
	r2.stop(t)
	f, err := os.OpenFile(db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(50) {
		if _, err := f.WriteAt([]byte("only replica 1 has this"), i*(size/50)+4096); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	before := status(t, p.mmetric).Scenarios[0].Captured
	waitFor(t, p.rmetric, "replica 1 to apply what replica 2 lacks", func(r *monitor.Report) bool {
		c := status(t, p.mmetric).Scenarios[0].Captured
		return c > before && applied(r) >= c
	})
	m.kill(t)
	scatter(t, db, size)
	r2 = p2.replica()
	m = startAgent(t, "master", "--config", cfg)
	waitFor(t, p.mmetric, "both replicas to join the new master", func(r *monitor.Report) bool {
		return r.Scenarios[0].Peers[0].Connected && r.Scenarios[0].Peers[1].Connected
	})
	m.stop(t)
	for _, addr := range []string{p.rmetric, p2.rmetric} {
		if got := metric(t, addr, "writecap_replica_repairs_total"); got != 1 {
			t.Errorf("replica %s repaired by a new master %v times, want 1", addr, got)
		}
	}
	r1.stop(t)
	r2.stop(t)
	p.compare()
	treecmp.AssertEqual(t, p.src, p2.dst, treecmp.Options{Owners: true})
	assertRepairedBlocks(t, m, size)
}

// TestSpoolOverflow: the replica is away while the master's spool passes
// its limit; the master keeps a record of what changed instead of growing,
// and when the replica returns it resumes from the spool and gets a repair
// of exactly what changed, not a rebuild.
func TestSpoolOverflow(t *testing.T) {
	requireBPF(t)
	p := newPair(t, "--spool-max", "16MiB", "--spool-memory", "4MiB")
	rep := p.replica()
	m := p.master()
	waitFor(t, p.rmetric, "the initial copy", func(r *monitor.Report) bool { return applied(r) > 0 })
	rep.stop(t)
	if err := <-p.workload(14, 1500); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, p.mmetric, "writecap_master_spool_overflows_total"); got < 1 {
		t.Fatalf("spool never overflowed (%v); the test needs a larger workload", got)
	}
	if got := metric(t, p.mmetric, "writecap_master_spool_bytes"); got > 16<<20 {
		t.Errorf("spool holds %v bytes, over its 16 MiB limit", got)
	}
	rep = p.replica()
	m.stop(t)
	if got := metric(t, p.rmetric, "writecap_replica_resets_total"); got != 0 {
		t.Errorf("returning replica was rebuilt %v times; it should resume and be repaired", got)
	}
	if !strings.Contains(m.stderr.String(), "repaired what the replicas missed") {
		t.Errorf("master log does not show the repair of dropped changes")
	}
	rep.stop(t)
	p.compare()
}

// TestWrongCA: a master whose certificate another CA signed is refused
// before any data is exchanged, and the replica's data stays as it was.
func TestWrongCA(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	other := filepath.Join(t.TempDir(), "other")
	makeCerts(t, other, "master")
	rep := p.replica()
	args := append([]string{"master", "--source", p.src, "--replica", p.listen, "--state", p.mstate,
		"--metrics", p.mmetric}, tlsArgs(other, "master")...)
	m := startAgent(t, args...)
	waitFor(t, p.mmetric, "a refused session", func(r *monitor.Report) bool {
		return r.Scenarios[0].Peers[0].Reconnects >= 2
	})
	ms := status(t, p.mmetric)
	if e := ms.Scenarios[0].Peers[0].LastError; !strings.Contains(e, "certificate") && !strings.Contains(e, "tls") {
		t.Errorf("master's last error %q does not say the certificate was refused", e)
	}
	m.stop(t)
	if got := metric(t, p.rmetric, "writecap_replica_sessions_total"); got != 0 {
		t.Errorf("replica accepted %v sessions from the wrong CA", got)
	}
	rep.stop(t)
	if !strings.Contains(rep.stderr.String(), "refused before any data") {
		t.Errorf("replica log does not name the refusal:\n%s", lastLines(rep.stderr.String(), 20))
	}
	ents, err := os.ReadDir(p.dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("replica root has %d entries after a refused master, want none", len(ents))
	}
}

// TestTwoReplicas: one master streams to two replicas, each with its own
// cursor; one is killed and restarted meanwhile and resumes on its own.
// The master's settings come from a YAML scenario file.
func TestTwoReplicas(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	p2 := p.second()
	r1 := p.replica()
	r2 := p2.replica()
	cfg := p.twoReplicaConfig(p2)
	m := startAgent(t, "master", "--config", cfg)
	done := p.workload(15, 1500)
	waitFor(t, p.rmetric, "replica 1 to apply in a session", func(r *monitor.Report) bool {
		return applied(r) > 100 && r.Scenarios[0].State == "connected"
	})
	r1.kill(t)
	r1 = p.replica()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ms := status(t, p.mmetric)
	if n := len(ms.Scenarios[0].Peers); n != 2 {
		t.Fatalf("master reports %d replicas, want 2", n)
	}
	m.stop(t)
	if got := metric(t, p.rmetric, "writecap_replica_resets_total"); got != 0 {
		t.Errorf("restarted replica 1 was rebuilt %v times; it should resume", got)
	}
	r1.stop(t)
	r2.stop(t)
	p.compare()
	treecmp.AssertEqual(t, p.src, p2.dst, treecmp.Options{Owners: true})
}

// second is a second replica of p's master, with its own tree, state and
// addresses, and identity "replica2".
func (p *pair) second() *pair {
	p.t.Helper()
	makeCerts(p.t, p.certs, "replica2")
	p2 := *p
	p2.dst, p2.rstate, p2.listen, p2.rmetric = p.dst+"2", p.rstate+"2", freeAddr(p.t), freeAddr(p.t)
	p2.node = "replica2"
	return &p2
}

// twoReplicaConfig writes a master's YAML scenario file replicating p.src
// to p's replica and p2's.
func (p *pair) twoReplicaConfig(p2 *pair) string {
	p.t.Helper()
	cfg := filepath.Join(p.t.TempDir(), "master.yaml")
	writeFile(p.t, cfg, fmt.Sprintf(`name: master
tls: {ca: %[1]s/ca.crt, cert: %[1]s/master.crt, key: %[1]s/master.key}
metrics: %[2]s
scenarios:
  - id: default
    source: %[3]s
    state: %[4]s
    compress: false
    replicas:
      - {addr: "%[5]s", name: replica}
      - {addr: "%[6]s", name: replica2}
`, p.certs, p.mmetric, p.src, p.mstate, p.listen, p2.listen))
	return cfg
}

// TestTwoMasters: two masters, each protecting its own tree, replicate
// into one replica process serving two scenarios from a YAML file.
func TestTwoMasters(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	makeCerts(t, p.certs, "master2")
	base := t.TempDir()
	src2, dst2, mstate2, mmetric2 := filepath.Join(base, "src2"), filepath.Join(base, "dst2"), filepath.Join(base, "mstate2"), freeAddr(t)
	if err := os.Mkdir(src2, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(base, "replica.yaml")
	writeFile(t, cfg, fmt.Sprintf(`name: replica
listen: "%[2]s"
metrics: "%[3]s"
tls: {ca: %[1]s/ca.crt, cert: %[1]s/replica.crt, key: %[1]s/replica.key}
scenarios:
  - {id: one, root: %[4]s, state: %[5]s, master: master}
  - {id: two, root: %[6]s, state: %[7]s, master: master2}
`, p.certs, p.listen, p.rmetric, p.dst, p.rstate, dst2, filepath.Join(base, "rstate2")))
	rep := startAgent(t, "replica", "--config", cfg)
	m1 := startAgent(t, append([]string{"master", "--scenario", "one", "--source", p.src, "--replica", p.listen,
		"--state", p.mstate, "--metrics", p.mmetric}, tlsArgs(p.certs, "master")...)...)
	m2 := startAgent(t, append([]string{"master", "--scenario", "two", "--source", src2, "--replica", p.listen,
		"--state", mstate2, "--metrics", mmetric2}, tlsArgs(p.certs, "master2")...)...)
	d1 := p.workload(16, 800)
	q := *p
	q.src, q.outside = src2, filepath.Join(base, "outside2")
	if err := os.Mkdir(q.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	d2 := q.workload(17, 800)
	if err := errors.Join(<-d1, <-d2); err != nil {
		t.Fatal(err)
	}
	rs := status(t, p.rmetric)
	if len(rs.Scenarios) != 2 {
		t.Fatalf("replica serves %d scenarios, want 2", len(rs.Scenarios))
	}
	m1.stop(t)
	m2.stop(t)
	rep.stop(t)
	p.compare()
	treecmp.AssertEqual(t, src2, dst2, treecmp.Options{Owners: true})
}

// TestReplicaDiskFull: the replica's root fills up; it stops applying,
// says so in status and metrics, keeps what it has, and finishes once
// space returns.
func TestReplicaDiskFull(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	if err := os.Mkdir(p.dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "writecap-full", p.dst).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", p.dst).Run() })
	rep := p.replica()
	m := p.master()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	writeFile(t, filepath.Join(p.src, "big"), string(big))
	waitFor(t, p.rmetric, "the replica to report a full disk", func(r *monitor.Report) bool {
		return r.Scenarios[0].State == "disk full"
	})
	if got := metric(t, p.rmetric, "writecap_replica_disk_full"); got != 1 {
		t.Errorf("writecap_replica_disk_full = %v while the status says disk full", got)
	}
	if e := status(t, p.rmetric).Scenarios[0].LastError; !strings.Contains(e, "no space left") {
		t.Errorf("status last error %q does not say the disk is full", e)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=256m", p.dst).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	m.stop(t)
	if got := metric(t, p.rmetric, "writecap_replica_disk_full"); got != 0 {
		t.Errorf("writecap_replica_disk_full = %v after space returned", got)
	}
	rep.stop(t)
	p.compare()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMasterRestartNewReplica: a master restarted from its activity record
// repairs the replica it had, and gives a replica it never had a full copy,
// not the repair (which only holds what changed).
func TestMasterRestartNewReplica(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	r1 := p.replica()
	m := p.master()
	if err := <-p.workload(18, 300); err != nil {
		t.Fatal(err)
	}
	m.stop(t)
	p2 := *p
	p2.dst, p2.rstate, p2.listen, p2.rmetric = p.dst+"2", p.rstate+"2", freeAddr(t), freeAddr(t)
	r2 := p2.replica()
	// The first master stopped cleanly, so nothing was in flight: with
	// little slack the repair holds only what changed since, and a new
	// replica fed from it would miss the rest.
	args := append([]string{"master", "--source", p.src, "--replica", p.listen, "--replica", p2.listen,
		"--replica-name", "replica", "--state", p.mstate, "--metrics", p.mmetric, "--resume-slack", "1ms"},
		tlsArgs(p.certs, "master")...)
	m = startAgent(t, args...)
	waitFor(t, p.mmetric, "both replicas to connect", func(r *monitor.Report) bool {
		ps := r.Scenarios[0].Peers
		return len(ps) == 2 && ps[0].Connected && ps[1].Connected
	})
	m.stop(t)
	if got := metric(t, p.rmetric, "writecap_replica_repairs_total"); got != 1 {
		t.Errorf("the old replica was repaired %v times by the new master, want 1", got)
	}
	if got := metric(t, p2.rmetric, "writecap_replica_resets_total"); got != 1 {
		t.Errorf("the new replica got %v full copies, want 1", got)
	}
	r1.stop(t)
	r2.stop(t)
	p.compare()
	treecmp.AssertEqual(t, p.src, p2.dst, treecmp.Options{Owners: true})
}

// TestReplicaStaleCopy: a new replica whose root already holds an older
// copy of the master's tree (changed blocks, extra files, an entry of the
// wrong kind) sends its manifest; the master's full copy is made against
// it, so only what differs crosses, while a workload runs; the trees end
// identical and the replica was never cleared.
func TestReplicaStaleCopy(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	const size = 64 << 20
	for _, d := range []string{filepath.Join(p.src, "db"), filepath.Join(p.dst, "db"), filepath.Join(p.dst, "before")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeStale(t, filepath.Join(p.src, "db", "data"), filepath.Join(p.dst, "db", "data"), 3, size)
	if err := os.WriteFile(filepath.Join(p.dst, "db", "extra"), []byte("only on the replica"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := p.replica()
	m := p.master()
	if err := <-p.workload(15, 1000); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.mmetric, "the replica to connect", func(r *monitor.Report) bool { return r.Scenarios[0].Peers[0].Connected })
	if got := metric(t, p.mmetric, "writecap_master_replica_diffs_total"); got != 1 {
		t.Errorf("master made %v copies against a replica's manifest, want 1", got)
	}
	m.stop(t)
	if got := metric(t, p.rmetric, "writecap_replica_resets_total"); got != 0 {
		t.Errorf("replica was cleared %v times; it should keep its data", got)
	}
	if got := metric(t, p.rmetric, "writecap_replica_manifests_total"); got != 1 {
		t.Errorf("replica sent %v manifests, want 1", got)
	}
	rep.stop(t)
	p.compare()
	if had := logInt(t, m.stderr.String(), "bytes_the_replica_had"); had < size*3/4 {
		t.Errorf("the copy found %d bytes already on the replica, of a %d-byte file with 1%% of its blocks changed", had, size)
	}
}

// TestOnlineVerifyAndResync: verify over a running scenario, while a
// workload writes, finds the replica identical; a byte flipped on the
// replica is then found, named with its block; a resync on demand repairs
// it and the next verify finds nothing.
func TestOnlineVerifyAndResync(t *testing.T) {
	requireBPF(t)
	p := newPair(t)
	rep := p.replica()
	m := p.master()
	waitFor(t, p.rmetric, "the initial copy", func(r *monitor.Report) bool { return applied(r) > 0 })
	// Requests go to the control socket, which only root may use, and
	// never to the metrics address, which scrapers reach.
	if fi, err := os.Stat(filepath.Join(p.mstate, "control.sock")); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v %v, want a socket of mode 0600", fi, err)
	}
	for _, action := range []string{"resync", "verify"} {
		resp, err := http.Post("http://"+p.mmetric+"/"+action, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /%s on the metrics address: %s, want it refused", action, resp.Status)
		}
	}
	done := p.workload(16, 1500)
	waitFor(t, p.mmetric, "the workload to be under way", func(r *monitor.Report) bool { return r.Scenarios[0].Captured >= 1000 })
	// While writes go on, capture puts some changes right a little later
	// than it numbers others (races, names to reconcile): verify may name
	// such an entry, which the verify after the workload must not.
	out, err := exec.Command(binary, "verify", "--master", p.mstate, "--at", "1000").CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) || !strings.Contains(string(out), "bytes compared at seq") {
		t.Fatalf("verify while the workload ran: %v\n%s", err, out)
	}
	t.Logf("verify while the workload ran: %s", out)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Once the replica has everything, nothing rewrites its copy of
	// "before" (the workload never touches it) but a repair.
	captured := status(t, p.mmetric).Scenarios[0].Captured
	out, err = exec.Command(binary, "verify", "--master", p.mstate, "--at", fmt.Sprint(captured)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "identical") || strings.Contains(string(out), " 0 bytes compared") {
		t.Fatalf("verify at #%d, all the workload made: %v\n%s", captured, err, out)
	}
	var at uint64
	if i := strings.Index(string(out), " at seq "); i < 0 {
		t.Fatalf("verify does not say its seq:\n%s", out)
	} else if fmt.Sscanf(string(out[i+len(" at seq "):]), "%d", &at); at < captured {
		t.Errorf("verify --at %d compared at #%d", captured, at)
	}

	f, err := os.OpenFile(filepath.Join(p.dst, "before"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), 3)
	f.Close()
	out, err = exec.Command(binary, "verify", "--master", p.mstate, "--replica", "replica").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "before: content at [0, 16)") {
		t.Fatalf("verify after a flipped byte: %v, want exit 1 naming the block:\n%s", err, out)
	}

	out, err = exec.Command(binary, "sync", "--master", filepath.Join(p.mstate, "control.sock")).CombinedOutput()
	if err != nil {
		t.Fatalf("resync on demand: %v\n%s", err, out)
	}
	// It returns once the replica applied the copy.
	out, err = exec.Command(binary, "verify", "--master", p.mstate).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "identical") || !strings.Contains(string(out), " 0 changed since") {
		t.Fatalf("verify after the resync: %v\n%s", err, out)
	}
	if got := metric(t, p.mmetric, "writecap_master_replica_diffs_total"); got != 1 {
		t.Errorf("master made %v copies against the replica's manifest, want 1 (the resync)", got)
	}
	m.stop(t)
	rep.stop(t)
	p.compare()
}

// TestSpoolOverflowBlocks: scattered writes to a large file while the spool
// is over its limit, in place or to a copy renamed over it, are kept only as
// "this file changed"; when the replica returns, the repair compares the
// file with the replica's copy (its manifest of the files repaired whole)
// and sends only the blocks that differ.
func TestSpoolOverflowBlocks(t *testing.T) {
	requireBPF(t)
	tests := []struct {
		name   string
		change func(t *testing.T, db string, size int64)
	}{
		{name: "in place", change: scatter},
		{name: "replaced by a rename", change: func(t *testing.T, db string, size int64) {
			b, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, db+".tmp", string(b))
			scatter(t, db+".tmp", size)
			if err := os.Rename(db+".tmp", db); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, "--spool-max", "16MiB", "--spool-memory", "4MiB")
			const size = 64 << 20
			db := filepath.Join(p.src, "db")
			writeStale(t, db, filepath.Join(p.outside, "db"), 5, size)
			rep := p.replica()
			m := p.master()
			waitCopied(t, p, p.mmetric, "db", size)
			rep.stop(t)
			// Overflow the spool, then change db: the changes are dropped.
			writeStale(t, filepath.Join(p.src, "fill"), filepath.Join(p.outside, "fill"), 6, 32<<20) // random: lz4 cannot shrink it
			waitFor(t, p.mmetric, "the spool to overflow", func(*monitor.Report) bool {
				return metric(t, p.mmetric, "writecap_master_spool_overflows_total") >= 1
			})
			tt.change(t, db, size)
			rep = p.replica()
			m.stop(t)
			rep.stop(t)
			p.compare()
			assertRepairedBlocks(t, m, size)
		})
	}
}

// waitCopied waits until q's replica holds name at size bytes and has
// applied all the master at mmetric captured.
func waitCopied(t *testing.T, q *pair, mmetric, name string, size int64) {
	t.Helper()
	waitFor(t, q.rmetric, "the initial copy of "+name, func(r *monitor.Report) bool {
		fi, err := os.Stat(filepath.Join(q.dst, name))
		return err == nil && fi.Size() == size && applied(r) >= status(t, mmetric).Scenarios[0].Captured
	})
}

// scatter makes 200 small writes spread over the file at path, of size
// bytes: a few of its blocks change, most stay.
func scatter(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range int64(200) {
		if _, err := f.WriteAt([]byte("scattered"), i*(size/200)+i); err != nil {
			t.Fatal(err)
		}
	}
}

// assertRepairedBlocks checks that the master m repaired the scattered
// file of size bytes against the replica's manifest, sending only the
// blocks that differ.
func assertRepairedBlocks(t *testing.T, m *agent, size int) {
	t.Helper()
	if !strings.Contains(m.stderr.String(), "against_replica_manifest=true") {
		t.Fatalf("the repair did not use the replica's manifest:\n%s", lastLines(m.stderr.String(), 30))
	}
	if had := logInt(t, m.stderr.String(), "bytes_the_replica_had"); had < size/2 {
		t.Errorf("the repair found %d bytes of db on the replica; 200 small writes leave most of its %d", had, size)
	}
}
