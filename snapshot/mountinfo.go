//go:build linux

package snapshot

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo.
type mount struct {
	Root   string // the directory of the filesystem mounted here ("/" unless a bind mount)
	Point  string
	FSType string
	Source string // the device, e.g. /dev/mapper/vg0-data
}

func readMounts() ([]mount, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return parseMounts(data)
}

// parseMounts parses mountinfo lines:
//
//	36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw
//
// The optional fields before "-" vary in number.
func parseMounts(data []byte) ([]mount, error) {
	var ms []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("snapshot: malformed mountinfo line %q", sc.Text())
		}
		ms = append(ms, mount{
			Root:   unescapeMount(f[3]),
			Point:  unescapeMount(f[4]),
			FSType: f[sep+1],
			Source: unescapeMount(f[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: mountinfo: %w", err)
	}
	return ms, nil
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space, \011,
// \012, \134) in mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountFor is the mount dir is on, from this process's mount table.
func mountFor(dir string) (mount, error) {
	ms, err := readMounts()
	if err != nil {
		return mount{}, err
	}
	return mountOf(ms, dir)
}

// mountOf returns the mount that dir (absolute, free of symlinks) is on:
// the one with the longest mountpoint containing dir, the last listed when
// several are stacked on the same mountpoint.
func mountOf(ms []mount, dir string) (mount, error) {
	best := -1
	for i, m := range ms {
		if !within(dir, m.Point) {
			continue
		}
		if best < 0 || len(m.Point) >= len(ms[best].Point) {
			best = i
		}
	}
	if best < 0 {
		return mount{}, fmt.Errorf("snapshot: no mount contains %s", dir)
	}
	return ms[best], nil
}

// within reports whether path is dir or lies beneath it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
