package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeProgress returns a progress on a buffer that passes for a terminal (or not), with a
// clock that the test moves.
func fakeProgress(quiet, terminal bool) (*progress, *bytes.Buffer, *time.Time) {
	var buf bytes.Buffer
	p := newProgress(&buf, "calibrating", quiet)
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p.start = clock
	p.now = func() time.Time { return clock }
	p.isTerminal = func(io.Writer) bool { return terminal }
	return p, &buf, &clock
}

func TestProgress(t *testing.T) {
	p, buf, clock := fakeProgress(false, true)
	// 200 samples every 50ms: 4000/s. Redraws at 0, 100, 200, ... ms only.
	for i := 1; i <= 10; i++ {
		*clock = clock.Add(50 * time.Millisecond)
		p.Update(200*i, 2000)
	}
	out := buf.String()
	if strings.Contains(out, "\n") {
		t.Fatalf("newline before Done: %q", out)
	}
	draws := strings.Split(out, "\r")[1:]
	// Drawn at 50 (first), 150, 250, 350, 450 ms and at 500 ms (complete): 6 of 10 updates.
	if len(draws) != 6 {
		t.Errorf("%d redraws for 10 updates in 500ms, want 6 (throttled to 10/s):\n%q", len(draws), out)
	}
	want := "calibrating [##......................] 200/2000 samples  4000/s  1s left"
	if got := strings.TrimRight(draws[0], " "); got != want {
		t.Errorf("first line\n %q, want\n %q", got, want)
	}
	if got := strings.TrimRight(draws[2], " "); !strings.Contains(got, "1000/2000 samples  4000/s  1s left") || !strings.Contains(got, "[############............]") {
		t.Errorf("third line %q: want the counts, the rate and the time left", got)
	}
	if last := draws[len(draws)-1]; !strings.Contains(last, "2000/2000 samples  4000/s  in 1s") {
		t.Errorf("last line %q, want the complete counts and the elapsed time", last)
	}

	buf.Reset()
	*clock = clock.Add(500 * time.Millisecond)
	p.Done()
	if out := buf.String(); out != "\n" {
		t.Errorf("Done wrote %q, want only a newline after the complete line", out)
	}
	buf.Reset()
	p.Done()
	p.Update(1, 2)
	if buf.Len() != 0 {
		t.Errorf("after Done: %q, want nothing", buf.String())
	}
}

func TestProgressETA(t *testing.T) {
	p, buf, clock := fakeProgress(false, true)
	*clock = clock.Add(10 * time.Second)
	p.Update(1200, 10000) // 120/s, 8800 left: 73.3s
	if got := buf.String(); !strings.Contains(got, "1200/10000 samples  120/s  1m14s left") {
		t.Errorf("got %q", got)
	}
	// A shorter line (unknown total) pads over the longer one.
	buf.Reset()
	*clock = clock.Add(10 * time.Second)
	p.Update(4, 0)
	if got := buf.String(); !strings.HasPrefix(got, "\rcalibrating 4 samples  0.2/s ") || strings.Contains(got, "left") || len(got) < len("\rcalibrating [####....................] 1200/10000 samples  120/s  1m14s left") {
		t.Errorf("unknown total: %q", got)
	}
	// Done draws the counts of a throttled Update.
	buf.Reset()
	*clock = clock.Add(10 * time.Millisecond)
	p.Update(5, 0)
	if buf.Len() != 0 {
		t.Errorf("redrawn after 10ms: %q", buf.String())
	}
	p.Done()
	if got := buf.String(); !strings.HasPrefix(got, "\rcalibrating 5 samples  0.2/s") || !strings.HasSuffix(got, "\n") {
		t.Errorf("Done after a throttled update wrote %q, want its counts and a newline", got)
	}
}

func TestProgressSilent(t *testing.T) {
	for _, tc := range []struct {
		name            string
		quiet, terminal bool
	}{
		{"not a terminal", false, false},
		{"quiet", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, buf, clock := fakeProgress(tc.quiet, tc.terminal)
			for i := 0; i <= 4; i++ {
				*clock = clock.Add(time.Second)
				p.Update(i, 4)
			}
			p.Done()
			if buf.Len() != 0 {
				t.Errorf("wrote %q, want nothing", buf.String())
			}
		})
	}
	// The real check: a buffer and a regular file are no terminals.
	var buf bytes.Buffer
	p := newProgress(&buf, "x", false)
	p.Update(1, 2)
	p.Done()
	f, err := os.CreateTemp(t.TempDir(), "progress")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := newProgress(f, "x", false)
	q.Update(1, 2)
	q.Done()
	if st, _ := f.Stat(); buf.Len() != 0 || st.Size() != 0 {
		t.Errorf("wrote %q to a buffer and %d bytes to a file, want nothing", buf.String(), st.Size())
	}
	var nilp *progress
	nilp.Update(1, 2)
	nilp.Done()
}
