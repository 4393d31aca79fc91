package conn

import (
	"errors"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap"
)

// RejectedMessage is the reason given for every command until the agent can
// execute them: the control plane gets a final state instead of waiting.
const RejectedMessage = "command execution not supported by this agent version"

// handle acts on one message from the control plane.
func (s *session) handle(msg *flotillav1.ConnectResponse) error {
	switch body := msg.GetBody().(type) {
	case *flotillav1.ConnectResponse_Command:
		return s.reject(body.Command)
	case *flotillav1.ConnectResponse_Cancel:
		// Nothing runs, so there is nothing to cancel.
		s.log.Info("cancel received",
			zap.String("command_id", body.Cancel.GetCommandId()),
			zap.String("reason", body.Cancel.GetReason()))
	case *flotillav1.ConnectResponse_Welcome:
		s.log.Warn("unexpected second welcome ignored")
	default:
		// A newer control plane may send messages this agent does not know.
		s.log.Warn("unknown message from the control plane ignored")
	}
	return nil
}

// reject answers a command with COMMAND_STATE_REJECTED.
func (s *session) reject(cmd *flotillav1.Command) error {
	fields := []zap.Field{zap.String("command_id", cmd.GetId()), zap.String("kind", commandKind(cmd))}
	if cmd.GetDeadline() != nil {
		fields = append(fields, zap.Time("deadline", cmd.GetDeadline().AsTime()))
	}
	s.log.Info("command received", fields...)
	err := s.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_CommandEvent{CommandEvent: &flotillav1.CommandEvent{
		CommandId: cmd.GetId(),
		State:     flotillav1.CommandState_COMMAND_STATE_REJECTED,
		Message:   RejectedMessage,
		At:        s.timestamp(),
	}}})
	if errors.Is(err, errSendClosed) {
		// Shutting down: the control plane resends the command on the next stream.
		s.log.Info("command not answered: the stream is closing", zap.String("command_id", cmd.GetId()))
		return nil
	}
	if err != nil {
		return s.sendFailure(err)
	}
	s.log.Info("command rejected", zap.String("command_id", cmd.GetId()), zap.String("reason", RejectedMessage))
	return nil
}

// commandKind names a command's kind for the logs.
func commandKind(cmd *flotillav1.Command) string {
	switch cmd.GetSpec().GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		return "pull"
	case *flotillav1.CommandSpec_Restart:
		return "restart"
	case *flotillav1.CommandSpec_Backup:
		return "backup"
	case *flotillav1.CommandSpec_Drain:
		return "drain"
	case *flotillav1.CommandSpec_Undrain:
		return "undrain"
	default:
		return "unknown"
	}
}
