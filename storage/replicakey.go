package storage

import (
	"net/url"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// ReplicaKey is the form in which two replica paths (a Client's String, or
// a database's replica name) are compared to tell whether they would share
// storage. Object stores differ: S3 compares keys byte for byte, but a file
// replica on a case-insensitive filesystem (macOS, Windows shares, some
// FUSE mounts) merges "T1" and "t1", and one that normalises Unicode (APFS,
// some NFS and SMB servers) merges "café" spelt with a precomposed é and
// with e plus a combining accent. walsync treats names as one replica
// when they are equal after Unicode NFC normalisation and case folding, so
// that two databases can never meet in one replica on any store; users get
// a refusal instead of a silent merge.
//
// A client's String may be a URL with escaped characters (file:///…/caf%C3%A9),
// so escapes are undone first.
func ReplicaKey(s string) string {
	return replicaKey(s)
}

// Identifier is implemented by clients whose String can name one replica
// in more than one way (a file replica reached through a symbolic link).
type Identifier interface {
	// Identity names the replica canonically.
	Identity() string
}

// ClientKey is ReplicaKey of the client's canonical name: its Identity
// when it has one, else its String.
func ClientKey(c Client) string {
	if id, ok := c.(Identifier); ok {
		return replicaKey(id.Identity())
	}
	return replicaKey(c.String())
}

func replicaKey(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	return strings.ToLower(norm.NFC.String(s))
}
