package detect

import (
	"fmt"
	"math"
)

func (d *Detector) DebugSeries(dev, metric string) string {
	s := d.series[seriesKey{dev, metric}]
	if s == nil {
		return ""
	}
	return fmt.Sprintf("mean=%.3f sd=%.4f dsd=%.4f lmean=%.3f lsd=%.3f on=%v vr=%.4f vd=%.4f", s.mean, s.sd(), math.Sqrt(s.dvar), s.lmean, math.Sqrt(s.lvar), s.season.on, s.season.varRaw, s.season.varDeso)
}
