// Package fsx holds file-system operations shared by the packages that
// place files: the restore output and the file replica backend.
package fsx

import (
	"os"
)

// RenameNoReplace renames from to to, failing with fs.ErrExist if to
// exists. It uses the system's no-replace rename (Linux renameat2
// RENAME_NOREPLACE, macOS renamex_np RENAME_EXCL); where the file system
// does not support it, it links and unlinks instead, which fails the same
// way. It never replaces to: a replica object, once written, stays.
func RenameNoReplace(from, to string) error {
	err := renameExcl(from, to)
	if !unsupported(err) {
		if err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		return nil
	}
	if err := os.Link(from, to); err != nil {
		return err
	}
	return os.Remove(from)
}
