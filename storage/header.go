package storage

import (
	"context"
	"fmt"
	"io"

	"github.com/superfly/ltx"
)

// ReadHeader reads and validates the LTX header of a stored file with one
// range read, and checks it against the file's name and, when fi.Size is
// known, against the file's size (CheckLTXSize: a small object cannot be a
// snapshot of a huge database). The rest of the file is not read: callers
// that use its pages read it with OpenLTXFile, which verifies it all.
func ReadHeader(ctx context.Context, c Client, fi *FileInfo) (ltx.Header, error) {
	var hdr ltx.Header
	rc, err := c.OpenLTXRange(ctx, fi.Level, fi.MinTXID, fi.MaxTXID, 0, ltx.HeaderSize)
	if err != nil {
		return hdr, err
	}
	defer rc.Close()
	b := make([]byte, ltx.HeaderSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return hdr, &CorruptError{Object: c.String() + "/" + fi.String(), Reason: "header: " + err.Error()}
	}
	hdr, err = ParseHeader(b, fi)
	if err != nil {
		return hdr, &CorruptError{Object: c.String() + "/" + fi.String(), Reason: err.Error()}
	}
	return hdr, nil
}

// ParseHeader decodes and checks the LTX header b of the stored file fi:
// CheckLTXHeader, the TXIDs of its name, and CheckLTXSize with fi.Size.
func ParseHeader(b []byte, fi *FileInfo) (ltx.Header, error) {
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		return hdr, fmt.Errorf("header: %w", err)
	}
	if err := CheckLTXHeader(&hdr); err != nil {
		return hdr, fmt.Errorf("header: %w", err)
	}
	if hdr.MinTXID != fi.MinTXID || hdr.MaxTXID != fi.MaxTXID {
		return hdr, fmt.Errorf("header holds TXIDs %s-%s", hdr.MinTXID, hdr.MaxTXID)
	}
	if err := CheckLTXSize(&hdr, fi.Size); err != nil {
		return hdr, fmt.Errorf("header: %w", err)
	}
	return hdr, nil
}
