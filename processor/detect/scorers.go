package detect

import "math"

// Alert kinds, one per scorer.
const (
	KindZScore = "zscore"
	KindStuck  = "stuck"
	KindLimit  = "limit"
)

// zscore rates how far v lies from the series' robust level, in robust
// standard deviations: score = 1 - 2^-(z/Z)², so z = Z scores 0.5.
func (s *Series) zscore(cfg *Config, v float64) Finding {
	if s.n < 2 {
		return Finding{Kind: KindZScore, Low: nan, High: nan}
	}
	sd := s.sd()
	z := math.Abs(v-s.mean) / sd
	r := z / cfg.Z
	return Finding{
		Score: 1 - math.Exp2(-r*r),
		Kind:  KindZScore,
		Low:   s.mean - cfg.Z*sd,
		High:  s.mean + cfg.Z*sd,
	}
}

// stuck scores 1 once a series that used to move repeats the same value
// StuckAfter times.
func (s *Series) stuck(cfg *Config, v float64) Finding {
	if cfg.StuckAfter == 0 || !s.moved || v != s.last || int(s.run)+1 < cfg.StuckAfter {
		return Finding{Kind: KindStuck}
	}
	sd := s.sd()
	return Finding{Score: 1, Kind: KindStuck, Low: s.mean - cfg.Z*sd, High: s.mean + cfg.Z*sd}
}

// limit scores 1 outside the metric's static limits.
func limit(cfg *Config, metric string, v float64) Finding {
	l, ok := cfg.Limits[metric]
	if !ok {
		return Finding{Kind: KindLimit}
	}
	if v < l.Min || v > l.Max { // comparisons with a NaN (open) bound are false
		return Finding{Score: 1, Kind: KindLimit, Low: l.Min, High: l.Max}
	}
	return Finding{Kind: KindLimit}
}
