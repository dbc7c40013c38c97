package main

import (
	"testing"
	"time"
)

// A gap alert is put down to reordering only when a late reading of its
// device fills the silence it reports.
func TestLateReadingsExplainAGap(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var l lateReadings
	for s := 1; s <= 10; s++ {
		l.add("a", at(s))
		l.add("b", at(s))
	}
	l.add("a", at(16)) // overtook 11..15
	for s := 11; s <= 15; s++ {
		l.add("a", at(s))
	}
	l.add("a", at(17))
	l.add("a", at(17)) // a repeat is not late
	l.add("b", at(40)) // b was silent

	if !l.explains("a", at(16)) {
		t.Error("a's gap at 16 s is filled by its late readings")
	}
	if l.explains("a", at(30)) {
		t.Error("a gap at 30 s is not: the late readings lie 15 s or more before it")
	}
	if l.explains("b", at(40)) {
		t.Error("b had no late reading: its gap is a silence")
	}
	if l.explains("c", at(16)) {
		t.Error("an unknown device has no late reading")
	}
}
