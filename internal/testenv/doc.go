// Package testenv provides test-only infrastructure: a real S3 server
// (versitygw with its posix backend, started by internal/s3server)
// listening on 127.0.0.1, plus helpers to drive it with the aws CLI as an
// independent client.
//
// Dependencies are installed by scripts/test-deps.sh (apt packages awscli and
// sqlite3, and versitygw built into <repo>/.cache/bin). Tests that need a
// dependency that is missing FAIL with a message naming that script; they are
// never skipped.
//
// # Lifecycle of the shared server
//
// [S3] starts at most one versitygw process per test binary (lazily, on first
// use) and all tests of the package share it; give each test its own bucket
// with [S3Server.NewBucket]. The server is stopped, and its temporary directory
// removed, by [Stop]. The simplest way to get that is a TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Without it, the server process is still killed when the test binary exits
// (Linux parent-death signal), but its temporary directory is left behind
// under os.TempDir() (or <repo>/.cache/tmp).
//
// # Environment
//
//   - WALSYNC_VERSITYGW: path of the versitygw binary (default
//     <repo>/.cache/bin/versitygw).
//   - WALSYNC_S3_SIDECAR=1: store object metadata in a sidecar directory
//     instead of extended attributes (used automatically when no candidate
//     temporary directory supports user xattrs).
package testenv
