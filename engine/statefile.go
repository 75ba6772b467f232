package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/walsync/walsync/capture"
)

// The state file lets a restart skip reading every replica: at a clean
// stop the engine writes, for each released database, where its replica
// ends and what its files looked like; at start it reads the file and
// deletes it at once, so the file is only ever used by the run right after
// the clean stop that wrote it (a crash leaves none, and every replica is
// read again). A database whose files changed meanwhile is woken as after
// any cold spell, with the same proof that nothing was missed.

const stateFileVersion = 1

type stateFile struct {
	Version int       `json:"version"`
	Saved   time.Time `json:"saved"`
	DBs     []savedDB `json:"dbs"`
}

type savedDB struct {
	Path         string        `json:"path"`
	Replica      string        `json:"replica"`
	State        capture.State `json:"state"`
	LastSnapshot time.Time     `json:"last_snapshot,omitzero"`
	ChangedSince bool          `json:"changed_since,omitempty"`
}

// loadState applies the state file to the entries and removes the file.
func (eng *Engine) loadState() {
	path := eng.opts.StateFile
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		eng.log.Warn("cannot read the state file; reading every replica instead", "file", path, "error", err)
		return
	}
	// Whatever it holds, it is only good for this start.
	if err := removeDurably(path); err != nil {
		eng.log.Warn("cannot remove the state file, so not using it (it would go stale); reading every replica instead", "file", path, "error", err)
		return
	}
	var sf stateFile
	if err := json.Unmarshal(b, &sf); err != nil || sf.Version != stateFileVersion {
		eng.log.Warn("state file is damaged or of another version; reading every replica instead", "file", path, "error", err)
		return
	}
	used := 0
	for _, s := range sf.DBs {
		e, ok := eng.byPath[s.Path]
		// A database refused now may have owned the name in the run that
		// saved the state: a state would let the final sync write there.
		if !ok || e.db != nil || e.cold != nil || e.refused != "" || e.Client.String() != s.Replica {
			continue
		}
		st := s.State
		e.cold, e.verify = &st, true
		e.lastSnapshot, e.changedSince = s.LastSnapshot, s.ChangedSince
		e.txid = uint64(st.TXID)
		if st.TXIDTS != 0 {
			e.txidTime = time.UnixMilli(st.TXIDTS).UTC()
		}
		e.dirty = st.Changed(e.Path)
		eng.updateNextDue(e)
		if !e.dirty {
			e.synced = sf.Saved
		}
		used++
	}
	eng.log.Info("resumed from the state file", "file", path, "databases", used, "of", len(eng.entries), "saved", sf.Saved)
}

// saveState writes the state of every released database, atomically.
func (eng *Engine) saveState() error {
	path := eng.opts.StateFile
	sf := stateFile{Version: stateFileVersion, Saved: time.Now()}
	for _, e := range eng.entries {
		if e.cold == nil || e.dirty || e.removed || e.refused != "" || e.fails.n > 0 {
			continue
		}
		sf.DBs = append(sf.DBs, savedDB{Path: e.Path, Replica: e.Client.String(), State: *e.cold,
			LastSnapshot: e.lastSnapshot, ChangedSince: e.changedSince})
	}
	b, err := json.Marshal(sf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".walsync-state-*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	eng.log.Info("saved state for a fast restart", "file", path, "databases", len(sf.DBs))
	return nil
}

// removeDurably unlinks path and syncs its directory, so that a power loss
// cannot bring the file back. (If one did, each database still confirms its
// replica's end before its first upload.)
func removeDurably(path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
