package master

import "github.com/prometheus/client_golang/prometheus"

var (
	descCaptured  = prometheus.NewDesc("writecap_master_captured_seq", "Last sequence number captured.", []string{"scenario"}, nil)
	descSpool     = prometheus.NewDesc("writecap_master_spool_bytes", "Bytes in the spool, memory and disk.", []string{"scenario"}, nil)
	descSpoolDisk = prometheus.NewDesc("writecap_master_spool_disk_bytes", "Bytes of the spool on disk.", []string{"scenario"}, nil)
	descDrops     = prometheus.NewDesc("writecap_master_kernel_lost_total", "Changes the kernel could not queue (repaired from the master's files).", []string{"scenario"}, nil)
	descRepairs   = prometheus.NewDesc("writecap_master_repairs_total", "Ranges read back from the master's files to repair loss or races.", []string{"scenario"}, nil)
	descReconcile = prometheus.NewDesc("writecap_master_reconciles_total", "Walks of the master's tree (initial copy, repairs, full copies).", []string{"scenario"}, nil)
	descOverflows = prometheus.NewDesc("writecap_master_spool_overflows_total", "Times the spool reached its limit.", []string{"scenario"}, nil)
	descDropped   = prometheus.NewDesc("writecap_master_spool_dropped_records_total", "Records not spooled while the spool was at its limit (kept as a record of changes).", []string{"scenario"}, nil)
	descOvRepairs = prometheus.NewDesc("writecap_master_spool_repairs_total", "Repairs sent for what was changed while the spool was at its limit.", []string{"scenario"}, nil)
	descDiffs     = prometheus.NewDesc("writecap_master_replica_diffs_total", "Replicas that could not resume and got a full copy made against their manifest (only what differed sent).", []string{"scenario"}, nil)
	descResumes   = prometheus.NewDesc("writecap_master_replica_repairs_total", "Replicas of an earlier master (restart) repaired from its activity record instead of rebuilt.", []string{"scenario"}, nil)
	descEvicted   = prometheus.NewDesc("writecap_master_spool_evictions_total", "Times replicas away lost their place in a full spool (rebuilt when back).", []string{"scenario"}, nil)

	peer           = []string{"scenario", "replica"}
	descSent       = prometheus.NewDesc("writecap_master_sent_seq", "Last sequence number sent to the replica.", peer, nil)
	descAcked      = prometheus.NewDesc("writecap_master_acknowledged_seq", "Last sequence number the replica holds.", peer, nil)
	descApplied    = prometheus.NewDesc("writecap_master_applied_seq", "Last sequence number the replica applied.", peer, nil)
	descDurable    = prometheus.NewDesc("writecap_master_durable_seq", "Last sequence number durable at the replica.", peer, nil)
	descLag        = prometheus.NewDesc("writecap_master_lag_seconds", "Age of the oldest change the replica has not applied.", peer, nil)
	descLagBytes   = prometheus.NewDesc("writecap_master_lag_bytes", "Batch bytes the replica has not applied.", peer, nil)
	descConnected  = prometheus.NewDesc("writecap_master_connected", "1 while a session with the replica is up.", peer, nil)
	descReconnects = prometheus.NewDesc("writecap_master_reconnects_total", "Sessions with the replica that ended.", peer, nil)
	descSentBytes  = prometheus.NewDesc("writecap_master_sent_bytes_total", "Batch bytes sent to the replica.", peer, nil)
)

// collector reads the master's counts when scraped.
type collector struct{ m *Master }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCaptured, descSpool, descSpoolDisk, descDrops, descRepairs, descReconcile,
		descOverflows, descDropped, descOvRepairs, descResumes, descDiffs, descEvicted, descSent, descAcked, descApplied, descDurable, descLag, descLagBytes,
		descConnected, descReconnects, descSentBytes} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	id := m.cfg.Scenario
	metric := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, append([]string{id}, labels...)...)
	}
	st := m.source.Stats()
	qc := m.q.counts()
	metric(descCaptured, prometheus.GaugeValue, float64(m.q.spool.Last()))
	metric(descSpool, prometheus.GaugeValue, float64(m.q.spool.Bytes()))
	metric(descSpoolDisk, prometheus.GaugeValue, float64(m.q.spool.DiskBytes()))
	metric(descDrops, prometheus.CounterValue, float64(st.Lost+st.MetaLost))
	metric(descRepairs, prometheus.CounterValue, float64(st.Dirty+st.Races))
	metric(descReconcile, prometheus.CounterValue, float64(st.Reconciles))
	metric(descOverflows, prometheus.CounterValue, float64(qc.overflows))
	metric(descDropped, prometheus.CounterValue, float64(qc.dropped))
	metric(descOvRepairs, prometheus.CounterValue, float64(qc.repairs))
	metric(descEvicted, prometheus.CounterValue, float64(qc.evicted))
	metric(descResumes, prometheus.CounterValue, float64(qc.resumes))
	metric(descDiffs, prometheus.CounterValue, float64(qc.diffs))
	for _, f := range m.feeds {
		ss := f.sender.Stats()
		a := f.ack()
		lag, lagBytes := m.q.lag(a.Applied)
		connected := 0.0
		if ss.Connected {
			connected = 1
		}
		metric(descSent, prometheus.GaugeValue, float64(ss.Sent), f.r.Addr)
		metric(descAcked, prometheus.GaugeValue, float64(a.Received), f.r.Addr)
		metric(descApplied, prometheus.GaugeValue, float64(a.Applied), f.r.Addr)
		metric(descDurable, prometheus.GaugeValue, float64(a.Durable), f.r.Addr)
		metric(descLag, prometheus.GaugeValue, lag.Seconds(), f.r.Addr)
		metric(descLagBytes, prometheus.GaugeValue, float64(lagBytes), f.r.Addr)
		metric(descConnected, prometheus.GaugeValue, connected, f.r.Addr)
		metric(descReconnects, prometheus.CounterValue, float64(ss.Reconnects), f.r.Addr)
		metric(descSentBytes, prometheus.CounterValue, float64(ss.SentBytes), f.r.Addr)
	}
}
