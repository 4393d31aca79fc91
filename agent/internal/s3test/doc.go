// Package s3test runs a real S3 server for tests: versitygw (pinned in
// tools/go.mod, built into bin/ by `make tools`) with a posix backend in
// a temporary directory, on a free port of 127.0.0.1.
package s3test
