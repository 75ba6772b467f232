package capture

/*
extern int sqlite3_config(int, ...);

static int walsync_lean_sqlite(void) {
	int rc = sqlite3_config(13, 0, 0);                   // SQLITE_CONFIG_LOOKASIDE: none
	if (rc == 0) rc = sqlite3_config(7, (void*)0, 0, 0); // SQLITE_CONFIG_PAGECACHE: none
	return rc;
}
*/
import "C"

import "fmt"

// LeanSQLite turns off SQLite's per-connection lookaside memory and page
// cache pre-allocation for the whole process. walsync's connections only
// hold locks and read a page or two, so that memory (about 50 KB per
// connection) is pure cost. It must be called before the process opens any
// SQLite database; a program that also runs its own SQLite workload in the
// same process may prefer not to call it.
func LeanSQLite() error {
	if rc := C.walsync_lean_sqlite(); rc != 0 {
		return fmt.Errorf("sqlite3_config: error %d (SQLite was already initialized)", int(rc))
	}
	return nil
}
