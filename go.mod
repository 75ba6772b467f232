module github.com/walsync/walsync

go 1.26.8

require (
	github.com/aws/aws-sdk-go-v2 v1.48.0
	github.com/mattn/go-sqlite3 v1.14.53
	github.com/pierrec/lz4/v4 v4.1.23
	github.com/superfly/ltx v0.5.3
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.41.0
	gopkg.in/yaml.v3 v3.0.1
)

require github.com/aws/smithy-go v1.28.9 // indirect
