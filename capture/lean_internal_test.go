package capture

import "testing"

func TestLeanSQLite(t *testing.T) {
	// Runs before any test opens a database only when run alone; either
	// way the call must not crash, and once SQLite is up it must refuse.
	_ = LeanSQLite()
	c, err := openConn(t.TempDir()+"/x.db", 0)
	if err == nil {
		c.close()
	}
	if err := LeanSQLite(); err == nil {
		t.Fatal("LeanSQLite succeeded after SQLite was initialized; it cannot have changed anything")
	}
}
