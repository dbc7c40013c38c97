package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/internal/harness"
)

// writeReport gathers the reports of one `make eval` run from dir (nab.txt,
// fleets.txt and, when the runs that write them ran, shapes.txt and
// live.json) into one Markdown
// file stamped with the date and the commit, so the figures quoted in the
// docs say when and on what code they were measured.
func writeReport(path, dir string, now time.Time) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Detection quality: measured figures\n\n")
	fmt.Fprintf(&b, "Written by `make eval` on %s at commit %s. How each figure is made: [README.md](README.md). Do not edit by hand: run `make eval`.\n", now.UTC().Format("2006-01-02"), harness.Commit())
	for _, part := range []struct{ file, title string }{
		{"loco.txt", "NAB, leave one category out (the headline)"},
		{"nab.txt", "NAB in-sample (`sensorflow replay` over `../shared/nab` with the defaults, which were chosen on these series)"},
		{"skab.txt", "SKAB (`sensorflow replay`, each file one device)"},
		{"fleets.txt", "Simulated fleets offline"},
		{"shapes.txt", "Synthetic shapes (our own generator, every kind of fault on every kind of signal; the development set, then a variant never used to choose settings)"},
		{"live.json", "Live pipeline (`TestDetectionQuality`, real Mosquitto and Kafka)"},
	} {
		raw, err := os.ReadFile(filepath.Join(dir, part.file))
		if errors.Is(err, fs.ErrNotExist) && (part.file == "live.json" || part.file == "shapes.txt") {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
		fmt.Fprintf(&b, "\n## %s\n\n```\n%s\n```\n", part.title, strings.TrimRight(string(raw), "\n"))
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
