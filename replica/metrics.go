package replica

import "github.com/prometheus/client_golang/prometheus"

var (
	descReceived = prometheus.NewDesc("writecap_replica_received_seq", "Last sequence number held in the replica's spool.", []string{"scenario"}, nil)
	descDurable  = prometheus.NewDesc("writecap_replica_durable_seq", "Last sequence number made durable in the replica's spool.", []string{"scenario"}, nil)
	descApplied  = prometheus.NewDesc("writecap_replica_applied_seq", "Last sequence number applied beneath the root.", []string{"scenario"}, nil)
	descSpool    = prometheus.NewDesc("writecap_replica_spool_bytes", "Bytes received and not yet applied.", []string{"scenario"}, nil)
	descSessions = prometheus.NewDesc("writecap_replica_sessions_total", "Master sessions accepted.", []string{"scenario"}, nil)
	descRefused  = prometheus.NewDesc("writecap_replica_refused_total", "Master sessions refused for identity.", []string{"scenario"}, nil)
	descResets   = prometheus.NewDesc("writecap_replica_resets_total", "Times the master rebuilt this replica from a full copy.", []string{"scenario"}, nil)
	descAdopted  = prometheus.NewDesc("writecap_replica_repairs_total", "Times a new master (restarted) kept this replica's data and repaired it.", []string{"scenario"}, nil)
	descDiskFull = prometheus.NewDesc("writecap_replica_disk_full", "1 while applying is paused for lack of space.", []string{"scenario"}, nil)
	descStopped  = prometheus.NewDesc("writecap_replica_stopped", "1 when applying stopped on a refused record.", []string{"scenario"}, nil)
	descManifest = prometheus.NewDesc("writecap_replica_manifests_total", "Manifests (block hashes of what this replica holds) sent to a master, which then sent only what differed.", []string{"scenario"}, nil)
)

// collector reads the scenarios' counts when scraped.
type collector struct{ byID map[string]*scenario }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descDurable, descApplied, descSpool, descSessions, descRefused, descResets, descAdopted, descDiskFull, descStopped, descManifest} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, id string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, id)
	}
	counter := func(d *prometheus.Desc, v uint64, id string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), id)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for id, s := range c.byID {
		st := s.status()
		gauge(descReceived, float64(st.Received), id)
		gauge(descDurable, float64(st.Durable), id)
		gauge(descApplied, float64(st.Applied), id)
		gauge(descSpool, float64(st.SpoolBytes), id)
		counter(descSessions, s.counts.sessions.Load(), id)
		counter(descRefused, s.counts.refused.Load(), id)
		counter(descResets, s.counts.resets.Load(), id)
		counter(descAdopted, s.counts.adoptions.Load(), id)
		counter(descManifest, s.counts.manifests.Load(), id)
		gauge(descDiskFull, flag(st.State == StateDiskFull), id)
		gauge(descStopped, flag(st.State == StateStopped), id)
	}
}
