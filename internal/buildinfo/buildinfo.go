// Package buildinfo tells which build of the project's commands is running.
//
// make build and make dist stamp the version that `git describe --tags
// --always --dirty` prints into each command's main.version with -ldflags
// "-X main.version=..."; a plain `go build` or `go install` leaves it empty,
// and Version falls back to what the go command recorded in the binary.
package buildinfo

import "runtime/debug"

// Version returns stamped when it is set, else the module version the
// binary was built at (go install pkg@version), else "devel-" and the VCS
// revision (12 hex digits, "-dirty" when the tree had changes), else
// "devel", or "unknown" for a binary without build information.
func Version(stamped string) string {
	if stamped != "" {
		return stamped
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
