package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// rssMeter measures the process's peak resident set over a span. On Linux
// it resets the kernel's high-water mark (VmHWM) at the start by writing "5"
// to /proc/self/clear_refs and reads it at the end; where that is not
// permitted it takes the largest VmRSS sampled every 50ms. It samples the
// anonymous and file-backed parts either way, for the breakdown in detail.
// Without /proc it falls back on the Go runtime's own memory (MemStats.Sys).
type rssMeter struct {
	peakMB float64
	anonMB float64 // the peak of anonymous memory (RssAnon)
	detail string

	hwm     bool
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	maxKB   map[string]int64 // field of /proc/self/status → largest sample
	samples int
}

var rssFields = []string{"VmRSS", "RssAnon", "RssFile", "VmHWM"}

func (m *rssMeter) start() {
	m.maxKB = map[string]int64{}
	m.hwm = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	m.done = make(chan struct{})
	m.sample()
	m.wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
				m.sample()
			}
		}
	})
}

func (m *rssMeter) stop() {
	close(m.done)
	m.wg.Wait()
	m.sample()
	m.mu.Lock()
	defer m.mu.Unlock()
	mb := func(kb int64) float64 { return float64(kb) / 1024 }
	switch {
	case m.maxKB["VmRSS"] == 0: // no /proc
		m.peakMB = mb(m.maxKB["GoSys"])
		m.anonMB = m.peakMB
		m.detail = fmt.Sprintf("%.1f MB: /proc not available, Go runtime memory (MemStats.Sys) sampled every 50ms", m.peakMB)
		return
	case m.hwm:
		m.peakMB = mb(m.maxKB["VmHWM"])
		m.detail = fmt.Sprintf("%.1f MB: VmHWM, reset through /proc/self/clear_refs before the relay started", m.peakMB)
	default:
		m.peakMB = mb(m.maxKB["VmRSS"])
		m.detail = fmt.Sprintf("%.1f MB: largest VmRSS sampled every 50ms (/proc/self/clear_refs not writable)", m.peakMB)
	}
	m.anonMB = mb(m.maxKB["RssAnon"])
	m.detail += fmt.Sprintf("; sampled peaks: anonymous (Go heap, stacks) %.1f MB, file-backed (the mapped bbolt file, the binary) %.1f MB",
		mb(m.maxKB["RssAnon"]), mb(m.maxKB["RssFile"]))
}

func (m *rssMeter) sample() {
	got := map[string]int64{}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
			if !ok {
				continue
			}
			for _, f := range rssFields {
				if string(k) == f {
					kb, _ := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
					got[f] = kb
				}
			}
		}
	} else {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		got["GoSys"] = int64(ms.Sys / 1024)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
	for k, v := range got {
		m.maxKB[k] = max(m.maxKB[k], v)
	}
}
