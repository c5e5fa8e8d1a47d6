package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// parseSizes parses "100,300,1000".
func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sweep: %q is not a positive number of users", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Sweep runs cfg once per size, in order, and returns the reports.
func Sweep(ctx context.Context, cfg Config, sizes []int, progress io.Writer) ([]*Report, error) {
	var reps []*Report
	for _, n := range sizes {
		c := cfg
		c.Users = n
		rep, err := Run(ctx, c, progress)
		if err != nil {
			return reps, fmt.Errorf("%d users: %w", n, err)
		}
		reps = append(reps, rep)
	}
	return reps, nil
}

// WriteCharts writes throughput.svg (delivered messages/s each way),
// latency.svg (p99 each way) and rss.svg (RSS per user of the transport,
// per connection of imipd) against users into dir.
func WriteCharts(reps []*Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	series := func(f func(*Report) float64) plotter.XYs {
		pts := make(plotter.XYs, len(reps))
		for i, r := range reps {
			pts[i].X, pts[i].Y = float64(r.Users), f(r)
		}
		return pts
	}
	charts := []struct {
		file, title, y string
		lines          []any
	}{
		{"throughput.svg", "Messages delivered per second", "messages/s", []any{
			"XMPP -> IMIP", series(func(r *Report) float64 { return r.ToIMIP.PerSecond }),
			"IMIP -> XMPP", series(func(r *Report) float64 { return r.ToXMPP.PerSecond }),
		}},
		{"latency.svg", "End-to-end latency, p99", "ms", []any{
			"XMPP -> IMIP", series(func(r *Report) float64 { return r.ToIMIP.P99ms }),
			"IMIP -> XMPP", series(func(r *Report) float64 { return r.ToXMPP.P99ms }),
		}},
		{"rss.svg", "Resident memory per user (idle)", "KiB", []any{
			"transport, per user", series(func(r *Report) float64 { return r.TransportKiBUser }),
			"imipd, per connection", series(func(r *Report) float64 { return r.IMIPdKiBConn }),
		}},
	}
	for _, c := range charts {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = "users"
		p.Y.Label.Text = c.y
		p.Y.Min = 0
		if err := plotutil.AddLinePoints(p, c.lines...); err != nil {
			return fmt.Errorf("%s: %w", c.file, err)
		}
		p.Legend.Top = true
		if err := p.Save(6*vg.Inch, 3.5*vg.Inch, filepath.Join(dir, c.file)); err != nil {
			return fmt.Errorf("%s: %w", c.file, err)
		}
	}
	return nil
}
