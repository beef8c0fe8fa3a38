//go:build linux

package snapshot

import (
	"testing"
)

func TestParseMounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		line    string
		want    mount
		wantErr bool
	}{
		{
			name: "plain",
			line: "25 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
			want: mount{Root: "/", Point: "/", FSType: "ext4", Source: "/dev/vda"},
		},
		{
			name: "no optional fields",
			line: "43 27 7:0 / /tmp/m rw,relatime - xfs /dev/loop0 rw,inode64",
			want: mount{Root: "/", Point: "/tmp/m", FSType: "xfs", Source: "/dev/loop0"},
		},
		{
			name: "several optional fields",
			line: "60 25 253:3 / /srv rw shared:7 master:2 propagate_from:1 - xfs /dev/mapper/vg0-data rw",
			want: mount{Root: "/", Point: "/srv", FSType: "xfs", Source: "/dev/mapper/vg0-data"},
		},
		{
			name: "bind mount with escaped spaces",
			line: `61 25 253:3 /a\040b /mnt/my\040dir rw - xfs /dev/mapper/vg0-data rw`,
			want: mount{Root: "/a b", Point: "/mnt/my dir", FSType: "xfs", Source: "/dev/mapper/vg0-data"},
		},
		{
			name:    "no separator",
			line:    "25 1 253:0 / / rw,relatime shared:1 ext4 /dev/vda rw",
			wantErr: true,
		},
		{
			name:    "truncated",
			line:    "25 1 253:0 / / rw - ext4",
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := parseMounts([]byte(tc.line + "\n"))
			if tc.wantErr {
				assertError(t, err, "malformed")
				return
			}
			must(t, err)
			if len(ms) != 1 || ms[0] != tc.want {
				t.Errorf("parseMounts = %+v; want %+v", ms, tc.want)
			}
		})
	}
}

func TestMountOf(t *testing.T) {
	ms := []mount{
		{Point: "/", Source: "root"},
		{Point: "/srv", Source: "srv"},
		{Point: "/srv/db", Source: "db-under"},
		{Point: "/srv/db", Source: "db"}, // mounted over the one before
		{Point: "/srv2", Source: "srv2"},
	}
	for _, tc := range []struct {
		dir  string
		want string
	}{
		{"/", "root"},
		{"/home/x", "root"},
		{"/srv", "srv"},
		{"/srv/app", "srv"},
		{"/srv/db", "db"},
		{"/srv/db/base/1", "db"},
		{"/srv2/x", "srv2"},
		{"/srvx", "root"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			m, err := mountOf(ms, tc.dir)
			must(t, err)
			if m.Source != tc.want {
				t.Errorf("mountOf(%s) = %s; want %s", tc.dir, m.Source, tc.want)
			}
		})
	}
	_, err := mountOf(ms[1:2], "/home")
	assertError(t, err, "/home")
}
