package storage

import (
	"context"
	"fmt"
	"io"

	"github.com/superfly/ltx"
)

// ReadHeader reads and validates the LTX header of a stored file with one
// range read, and checks it against the file's name.
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
	if err := hdr.UnmarshalBinary(b); err != nil {
		return hdr, &CorruptError{Object: c.String() + "/" + fi.String(), Reason: "header: " + err.Error()}
	}
	if err := hdr.Validate(); err != nil {
		return hdr, &CorruptError{Object: c.String() + "/" + fi.String(), Reason: "header: " + err.Error()}
	}
	if hdr.MinTXID != fi.MinTXID || hdr.MaxTXID != fi.MaxTXID {
		return hdr, &CorruptError{Object: c.String() + "/" + fi.String(), Reason: fmt.Sprintf("header holds TXIDs %s-%s", hdr.MinTXID, hdr.MaxTXID)}
	}
	return hdr, nil
}
