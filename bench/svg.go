package main

import (
	"bytes"
	"fmt"
	"html"
	"os"
	"strings"
)

// writeSVG draws the results as two bar charts: each throughput as a share
// of its ceiling (with the target), and the end-to-end latencies. A plain
// SVG file needs no plotting library and opens in any browser.
func writeSVG(path string, results []result) error {
	var ratios, lats []result
	for _, r := range results {
		switch {
		case r.Ceiling > 0:
			ratios = append(ratios, r)
		case r.Section == "e2e" && r.Unit == "ms":
			lats = append(lats, r)
		}
	}
	const width, rowH, left, barW = 900, 34, 330, 480
	height := 90 + rowH*(len(ratios)+len(lats)) + 80
	var s bytes.Buffer
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", width, height)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	y := 30
	title := func(t string) {
		fmt.Fprintf(&s, `<text x="10" y="%d" font-size="16" font-weight="bold">%s</text>`+"\n", y, html.EscapeString(t))
		y += 20
	}
	title("Throughput as a share of the ceiling measured in the same run")
	for _, r := range ratios {
		w := int(min(r.Ratio, 1.5) / 1.5 * barW)
		color := "#d9534f"
		if r.Met != nil && *r.Met {
			color = "#5cb85c"
		}
		fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-10, y+17, html.EscapeString(r.Section+": "+r.Name))
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%d" height="22" fill="%s"/>`+"\n", left, y+3, w, color)
		fmt.Fprintf(&s, `<text x="%d" y="%d">%.2f (%s of %s %s)</text>`+"\n", left+w+6, y+19, r.Ratio, human(r.Value), human(r.Ceiling), html.EscapeString(r.Unit))
		if r.Target > 0 {
			tx := left + int(r.Target/1.5*barW)
			fmt.Fprintf(&s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black" stroke-dasharray="4,3"/>`+"\n", tx, y, tx, y+rowH-4)
		}
		y += rowH
	}
	oneX := left + int(1/1.5*barW)
	fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="11" text-anchor="middle">ceiling = 1.0 · dashed: target</text>`+"\n", oneX, y+12)
	y += 40
	if len(lats) > 0 {
		title("End-to-end latency (ms)")
		top := 0.0
		for _, r := range lats {
			top = max(top, r.Value)
		}
		for _, r := range lats {
			w := 0
			if top > 0 {
				w = int(r.Value / top * barW)
			}
			fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-10, y+17, html.EscapeString(strings.TrimPrefix(r.Name, "publish → ")))
			fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%d" height="22" fill="#337ab7"/>`+"\n", left, y+3, max(w, 1))
			fmt.Fprintf(&s, `<text x="%d" y="%d">%s ms</text>`+"\n", left+w+6, y+19, human(r.Value))
			y += rowH
		}
	}
	s.WriteString("</svg>\n")
	return os.WriteFile(path, s.Bytes(), 0o644)
}
