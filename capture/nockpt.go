package capture

/*
#include <stddef.h>
// Declared here rather than through sqlite3.h: the symbol is the one
// mattn/go-sqlite3 compiles into the binary.
typedef struct sqlite3 sqlite3;
extern int sqlite3_db_config(sqlite3*, int op, ...);
static int walsync_no_ckpt_on_close(void *db) {
	int on = -1;
	// SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE is 1006.
	int rc = sqlite3_db_config((sqlite3*)db, 1006, 1, &on);
	return rc != 0 ? -1 : on;
}
*/
import "C"

import (
	"errors"
	"reflect"
	"unsafe"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// noCheckpointOnClose sets SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, so that closing
// walsync's last connection to a database never checkpoints it: releasing
// a database must not write the database file (its times are what proves,
// on waking, that no frame was discarded unseen). The driver does not
// expose sqlite3_db_config, so the handle is read from its connection.
func noCheckpointOnClose(c *sqlite3.SQLiteConn) error {
	f := reflect.ValueOf(c).Elem().FieldByName("db")
	if !f.IsValid() || f.Kind() != reflect.Pointer {
		return errors.New("the SQLite driver's connection has no database handle field")
	}
	db := *(*unsafe.Pointer)(unsafe.Pointer(f.UnsafeAddr()))
	if db == nil {
		return errors.New("the SQLite connection is closed")
	}
	if on := C.walsync_no_ckpt_on_close(db); on != 1 {
		return errors.New("SQLite refused SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE")
	}
	return nil
}
