package main

// Process statistics: /proc samples of a replicator, their summary, and
// its rusage once it has exited.

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clkTck is USER_HZ, 100 on every Linux platform Go supports.
const clkTck = 100

// procSample is one reading of /proc/PID.
type procSample struct {
	at      time.Duration // since the replicator started
	rssKB   int64
	hwmKB   int64 // VmHWM: peak RSS so far
	fds     int
	threads int
	cpu     float64 // utime+stime, seconds
}

// sampleProc reads the memory, threads, fds and CPU time of pid.
func sampleProc(pid int) (procSample, error) {
	var s procSample
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			s.rssKB, _ = strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		case strings.HasPrefix(line, "VmHWM:"):
			s.hwmKB, _ = strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		case strings.HasPrefix(line, "Threads:"):
			s.threads, _ = strconv.Atoi(strings.Fields(line)[1])
		}
	}
	f.Close()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); utime is field 14, stime 15.
	if len(fields) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	s.cpu = float64(ut+st) / clkTck
	return s, nil
}

// resourceSummary is the peak and the steady (median) use of a run.
type resourceSummary struct {
	samples                    int
	rssPeakKB, rssSteadyKB     int64
	fdsPeak, fdsSteady         int
	threadsPeak, threadsSteady int
	cpuRun                     float64 // at the last sample before SIGTERM
	runWall                    time.Duration
}

func medianInt64(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	c := append([]int64(nil), v...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2]
}

// summarize takes the peaks over all samples, the steady values (medians)
// over steady (-1 without any), and the CPU time and wall time at the last
// sample.
func summarize(all, steady []procSample) resourceSummary {
	r := resourceSummary{samples: len(all), rssSteadyKB: -1, fdsSteady: -1, threadsSteady: -1}
	for _, s := range all {
		r.rssPeakKB = max(r.rssPeakKB, s.rssKB)
		r.fdsPeak = max(r.fdsPeak, s.fds)
		r.threadsPeak = max(r.threadsPeak, s.threads)
	}
	if len(all) > 0 {
		last := all[len(all)-1]
		r.cpuRun, r.runWall = last.cpu, last.at
	}
	if len(steady) > 0 {
		var rss, fds, thr []int64
		for _, s := range steady {
			rss = append(rss, s.rssKB)
			fds = append(fds, int64(s.fds))
			thr = append(thr, int64(s.threads))
		}
		r.rssSteadyKB = medianInt64(rss)
		r.fdsSteady = int(medianInt64(fds))
		r.threadsSteady = int(medianInt64(thr))
	}
	return r
}

// summarizeRun is summarize with the second half of the samples as the
// steady state.
func summarizeRun(ss []procSample) resourceSummary { return summarize(ss, ss[len(ss)/2:]) }

// sampler reads /proc/PID every second until stop; each, if set, runs
// after every reading.
type sampler struct {
	mu      sync.Mutex
	samples []procSample
	stopc   chan struct{}
	done    chan struct{}
}

// startSampler starts sampling pid; sample times count from since.
func startSampler(pid int, since time.Time, each func()) *sampler {
	s := &sampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			if ps, err := sampleProc(pid); err == nil {
				ps.at = time.Since(since)
				s.mu.Lock()
				s.samples = append(s.samples, ps)
				s.mu.Unlock()
			}
			if each != nil {
				each()
			}
			select {
			case <-s.stopc:
				return
			case <-tk.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the samples.
func (s *sampler) stop() []procSample {
	close(s.stopc)
	<-s.done
	return s.samples
}

// cpuNow is the CPU time pid has used so far, in seconds.
func cpuNow(pid int) float64 {
	s, err := sampleProc(pid)
	if err != nil {
		return math.NaN()
	}
	return s.cpu
}

// fdLimit is the open-files limit of pid, "soft (hard N)".
func fdLimit(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			if len(f) >= 5 {
				return f[3] + " (hard " + f[4] + ")"
			}
		}
	}
	return "?"
}

// cpuTotal is the user and system CPU time of an exited process.
func cpuTotal(st *os.ProcessState) float64 {
	ru, ok := st.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
