// Package objstore stores backup objects (archives, manifests, WAL
// segments) in a destination: a local directory or an S3-compatible
// object store. Every write is checked by reading the stored object back
// (size and SHA-256) before it is reported good, and objects are written
// so that an interrupted write never leaves a complete-looking object
// under its final key.
package objstore
