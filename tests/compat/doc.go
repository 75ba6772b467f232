// Package compat holds tests only: they check that walsync and Litestream
// v0.5 each restore the other's replicas, on a local directory and on a real
// S3 server (versitygw, see internal/testenv).
package compat
