package api

import (
	"context"

	"google.golang.org/grpc"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

const (
	defaultCommandPage = 50
	maxCommandPage     = 500
)

// RunCommand implements FleetService.RunCommand.
func (s *FleetService) RunCommand(ctx context.Context, req *flotillav1.RunCommandRequest) (*flotillav1.RunCommandResponse, error) {
	if err := validateCommandView("view", req.GetView()); err != nil {
		return nil, GRPCError(err)
	}
	fc, err := s.cfg.Commands.Start(ctx, req, principalOf(ctx))
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.RunCommandResponse{Command: fc}, nil
}

// GetCommand implements FleetService.GetCommand.
func (s *FleetService) GetCommand(ctx context.Context, req *flotillav1.GetCommandRequest) (*flotillav1.GetCommandResponse, error) {
	if err := requireID("command_id", req.GetCommandId()); err != nil {
		return nil, GRPCError(err)
	}
	if err := validateCommandView("view", req.GetView()); err != nil {
		return nil, GRPCError(err)
	}
	fc, err := s.cfg.Commands.Get(ctx, req.GetCommandId(), req.GetView())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.GetCommandResponse{Command: fc}, nil
}

// validateCommandView refuses a view this control plane does not know (a
// newer client's, or a typo'd number).
func validateCommandView(field string, v flotillav1.CommandView) error {
	if _, ok := flotillav1.CommandView_name[int32(v)]; !ok {
		return invalid(field, "%d is not a command view (COMMAND_VIEW_FULL or COMMAND_VIEW_SUMMARY)", int32(v))
	}
	return nil
}

// ListCommands implements FleetService.ListCommands.
func (s *FleetService) ListCommands(ctx context.Context, req *flotillav1.ListCommandsRequest) (*flotillav1.ListCommandsResponse, error) {
	limit := defaultCommandPage
	switch n := req.GetPageSize(); {
	case n < 0:
		return nil, invalid("page_size", "must not be negative")
	case n > maxCommandPage:
		return nil, invalid("page_size", "%d is more than the maximum of %d", n, maxCommandPage)
	case n > 0:
		limit = int(n)
	}
	if err := boundStates(len(req.GetStates())); err != nil {
		return nil, err
	}
	for i, st := range req.GetStates() {
		if _, ok := flotillav1.FleetCommandState_name[int32(st)]; !ok || st == flotillav1.FleetCommandState_FLEET_COMMAND_STATE_UNSPECIFIED {
			return nil, invalid("states", "entry %d: %v is not a fleet command state", i, st)
		}
	}
	before := ""
	if tok := req.GetPageToken(); tok != "" {
		var err error
		if before, err = decodePageToken(listingCommands, pageFilter(enumList(req.GetStates())), tok); err != nil {
			return nil, err
		}
	}
	fcs, err := s.cfg.Commands.List(ctx, req.GetStates(), before, limit+1)
	if err != nil {
		return nil, GRPCError(err)
	}
	resp := &flotillav1.ListCommandsResponse{}
	if len(fcs) > limit {
		fcs = fcs[:limit]
		resp.NextPageToken = encodePageToken(listingCommands, pageFilter(enumList(req.GetStates())), fcs[limit-1].GetId())
	}
	resp.Commands = fcs
	return resp, nil
}

// WatchCommand implements FleetService.WatchCommand.
func (s *FleetService) WatchCommand(req *flotillav1.WatchCommandRequest, stream grpc.ServerStreamingServer[flotillav1.WatchCommandResponse]) error {
	if err := requireID("command_id", req.GetCommandId()); err != nil {
		return GRPCError(err)
	}
	return GRPCError(s.cfg.Commands.Watch(stream.Context(), req.GetCommandId(), stream.Send))
}

// CancelCommand implements FleetService.CancelCommand.
func (s *FleetService) CancelCommand(ctx context.Context, req *flotillav1.CancelCommandRequest) (*flotillav1.CancelCommandResponse, error) {
	if err := requireID("command_id", req.GetCommandId()); err != nil {
		return nil, GRPCError(err)
	}
	if err := validateShort("reason", req.GetReason(), 1024); err != nil {
		return nil, GRPCError(err)
	}
	fc, err := s.cfg.Commands.Cancel(ctx, req.GetCommandId(), req.GetReason())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.CancelCommandResponse{Command: fc}, nil
}

func requireID(field, id string) error {
	if id == "" {
		return invalid(field, "required")
	}
	return validateShort(field, id, maxShortString)
}
