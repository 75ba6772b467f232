package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clkTck is USER_HZ, 100 on every Linux platform Go supports.
const clkTck = 100

type procSample struct {
	at      time.Duration // since the replicator started
	rssKB   int64
	hwmKB   int64 // VmHWM: peak RSS so far
	fds     int
	threads int
	cpu     float64 // utime+stime, seconds
}

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

func summarize(ss []procSample) resourceSummary {
	var r resourceSummary
	r.samples = len(ss)
	if len(ss) == 0 {
		return r
	}
	half := ss[len(ss)/2:]
	var rss, fds, thr []int64
	for _, s := range half {
		rss = append(rss, s.rssKB)
		fds = append(fds, int64(s.fds))
		thr = append(thr, int64(s.threads))
	}
	for _, s := range ss {
		r.rssPeakKB = max(r.rssPeakKB, s.rssKB)
		r.fdsPeak = max(r.fdsPeak, s.fds)
		r.threadsPeak = max(r.threadsPeak, s.threads)
	}
	r.rssSteadyKB = medianInt64(rss)
	r.fdsSteady = int(medianInt64(fds))
	r.threadsSteady = int(medianInt64(thr))
	last := ss[len(ss)-1]
	r.cpuRun = last.cpu
	r.runWall = last.at
	return r
}
