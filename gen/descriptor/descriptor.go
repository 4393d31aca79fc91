// Package descriptor embeds the API's file descriptors as buf builds them,
// with their comments (source info) and imports. protoc-gen-go strips the
// comments from the descriptors compiled into the generated code, so server
// reflection serves these instead and grpcurl's `describe` shows what each
// message, field and value is for. `make generate` writes flotilla.binpb.
package descriptor

import _ "embed"

// FileDescriptorSet is a serialized google.protobuf.FileDescriptorSet of
// proto/ and everything it imports, comments included.
//
//go:embed flotilla.binpb
var FileDescriptorSet []byte
