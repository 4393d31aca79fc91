package server

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	v1reflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphareflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"flotilla.dev/gen/descriptor"
)

// registerReflection serves server reflection (v1 and v1alpha, as
// reflection.Register does) from the API's descriptors with their
// comments, so that `grpcurl describe` documents every message, field and
// value; services of libraries (health, reflection itself) come from the
// descriptors compiled into the program.
func registerReflection(s *grpc.Server) error {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(descriptor.FileDescriptorSet, &set); err != nil {
		return fmt.Errorf("reflection: the embedded API descriptors: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return fmt.Errorf("reflection: the embedded API descriptors: %w", err)
	}
	opts := reflection.ServerOptions{Services: s, DescriptorResolver: documented{files}}
	v1reflectiongrpc.RegisterServerReflectionServer(s, reflection.NewServerV1(opts))
	v1alphareflectiongrpc.RegisterServerReflectionServer(s, reflection.NewServer(opts))
	return nil
}

// documented resolves from the documented API descriptors first, then from
// the ones compiled into the program.
type documented struct{ api *protoregistry.Files }

func (d documented) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := d.api.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (d documented) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if desc, err := d.api.FindDescriptorByName(name); err == nil {
		return desc, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
