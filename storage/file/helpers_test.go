package file_test

import (
	"bytes"
	"io"
	"time"
)

var testTime = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
