package resync

import "github.com/prometheus/client_golang/prometheus"

var (
	descFilesTotal = prometheus.NewDesc("writecap_sync_files", "Files a sync or verify has to examine.", []string{"op"}, nil)
	descFilesDone  = prometheus.NewDesc("writecap_sync_files_done", "Files examined so far.", []string{"op"}, nil)
	descBytesTotal = prometheus.NewDesc("writecap_sync_bytes", "Bytes of the files to examine.", []string{"op"}, nil)
	descBytesDone  = prometheus.NewDesc("writecap_sync_bytes_done", "Bytes examined so far (compared or copied).", []string{"op"}, nil)
	descBytesSent  = prometheus.NewDesc("writecap_sync_bytes_sent", "Bytes that had to cross: data and hashes.", []string{"op"}, nil)
	descRate       = prometheus.NewDesc("writecap_sync_rate_bytes_per_second", "Bytes examined per second so far.", []string{"op"}, nil)
	descETA        = prometheus.NewDesc("writecap_sync_eta_seconds", "Time left at the rate so far (0: unknown).", []string{"op"}, nil)
)

// progressCollector serves a Progress as metrics, the figures the progress
// display shows.
type progressCollector struct {
	p  *Progress
	op string
}

// Collector returns a Prometheus collector of p, labelled op ("sync",
// "verify", ...).
func (p *Progress) Collector(op string) prometheus.Collector { return &progressCollector{p: p, op: op} }

func (c *progressCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFilesTotal, descFilesDone, descBytesTotal, descBytesDone, descBytesSent, descRate, descETA} {
		ch <- d
	}
}

func (c *progressCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.p.Read()
	for _, m := range []struct {
		d *prometheus.Desc
		v float64
	}{
		{descFilesTotal, float64(r.FilesTotal)}, {descFilesDone, float64(r.FilesDone)},
		{descBytesTotal, float64(r.BytesTotal)}, {descBytesDone, float64(r.BytesDone)},
		{descBytesSent, float64(r.BytesSent)}, {descRate, r.Rate()}, {descETA, r.ETA().Seconds()},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v, c.op)
	}
}
