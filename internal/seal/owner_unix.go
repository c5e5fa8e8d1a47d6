//go:build unix

package seal

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// chownLike gives name the owner of like, when run as root and the owners
// differ: a rotation run by root keeps the key readable by the service's
// user.
func chownLike(name string, like fs.FileInfo) error {
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 || (st.Uid == 0 && st.Gid == 0) {
		return nil
	}
	if err := os.Chown(name, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("seal: giving the new key the old one's owner: %w", err)
	}
	return nil
}
