package engine_test

import (
	"os"
	"path/filepath"
)

func mkdir(file string) error { return os.MkdirAll(filepath.Dir(file), 0o755) }
