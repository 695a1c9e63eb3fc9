package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

const (
	progressEvery = 100 * time.Millisecond // at most ten redraws a second
	progressBar   = 24                     // characters between the brackets
)

// progress draws one line on a terminal, redrawn in place with a carriage return:
//
//	calibrating [#############...........] 1200/2000 samples  850/s  1s left
//
// It is silent when quiet or when its writer is not a terminal, so that logs and pipes get
// no carriage returns. Its methods are safe for concurrent use and do nothing on a nil
// *progress; Update fits a func(done, total int) callback.
type progress struct {
	w     io.Writer
	label string
	quiet bool

	// isTerminal and now are replaced by tests.
	isTerminal func(io.Writer) bool
	now        func() time.Time

	mu          sync.Mutex
	checked, on bool      // whether w was checked, and is a terminal
	start, last time.Time // creation; the last redraw
	done, total int       // the last counts given
	drawn       bool      // something was drawn and Done has not ended the line
	shown       string    // the line last drawn
	shownDone   int       // its count
	finished    bool
}

// newProgress returns a progress line on w labelled label (as "calibrating"). Its clock, for
// the rate and the time left, starts now.
func newProgress(w io.Writer, label string, quiet bool) *progress {
	return &progress{w: w, label: label, quiet: quiet, isTerminal: isTerminal, now: time.Now, start: time.Now()}
}

// isTerminal reports whether w is an *os.File open on a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Update records that done of total samples are processed (total <= 0: unknown) and redraws
// the line if the last redraw is at least progressEvery old, or done reached total.
func (p *progress) Update(done, total int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled() {
		return
	}
	p.done, p.total = done, total
	t := p.now()
	if p.drawn && t.Sub(p.last) < progressEvery && (total <= 0 || done < total) {
		return
	}
	p.draw(t)
}

// Done draws the last counts given, if a throttled Update left them undrawn, and ends the
// line. Later calls do nothing.
func (p *progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled() || !p.drawn {
		p.finished = true
		return
	}
	if p.done != p.shownDone {
		p.draw(p.now())
	}
	fmt.Fprint(p.w, "\n")
	p.drawn, p.finished = false, true
}

// enabled says whether p draws; it checks the writer once.
func (p *progress) enabled() bool {
	if p.finished || p.quiet {
		return false
	}
	if !p.checked {
		p.checked, p.on = true, p.isTerminal(p.w)
	}
	return p.on
}

// draw writes the line for the counts at time t, padded to hide a longer line drawn before.
func (p *progress) draw(t time.Time) {
	line := p.line(t.Sub(p.start))
	if p.drawn && line == p.shown {
		return
	}
	pad := max(0, len(p.shown)-len(line))
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.drawn, p.shown, p.shownDone, p.last = true, line, p.done, t
}

// line formats the counts after elapsed time.
func (p *progress) line(elapsed time.Duration) string {
	var b strings.Builder
	if p.label != "" {
		b.WriteString(p.label + " ")
	}
	if p.total > 0 {
		filled := progressBar * min(max(p.done, 0), p.total) / p.total
		fmt.Fprintf(&b, "[%s%s] %d/%d samples", strings.Repeat("#", filled), strings.Repeat(".", progressBar-filled), p.done, p.total)
	} else {
		fmt.Fprintf(&b, "%d samples", p.done)
	}
	if elapsed <= 0 || p.done <= 0 {
		return b.String()
	}
	rate := float64(p.done) / elapsed.Seconds()
	if rate >= 10 {
		fmt.Fprintf(&b, "  %.0f/s", rate)
	} else {
		fmt.Fprintf(&b, "  %.1f/s", rate)
	}
	switch {
	case p.total > 0 && p.done >= p.total:
		fmt.Fprintf(&b, "  in %s", shortDuration(elapsed))
	case p.total > 0:
		left := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
		fmt.Fprintf(&b, "  %s left", shortDuration(left))
	}
	return b.String()
}

// shortDuration rounds d up to whole seconds: "0s", "7s", "2m05s", "1h02m".
func shortDuration(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
}
