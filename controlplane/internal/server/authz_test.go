package server_test

import (
	"context"
	"crypto/tls"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server/servertest"
)

// minAccess is who may call a method at least.
type minAccess int

const (
	accessAnyone minAccess = iota // no credential (health, reflection, Register)
	accessAgentCert
	accessViewer
	accessOperator
	accessAdmin
)

// expectedAccess is the access every RPC the server offers must have. The
// test below walks the server's registered services, so an RPC added
// without an entry here fails it: nobody can add an RPC without deciding
// who may call it.
var expectedAccess = map[string]minAccess{
	"/grpc.health.v1.Health/Check":                                   accessAnyone,
	"/grpc.health.v1.Health/List":                                    accessAnyone,
	"/grpc.health.v1.Health/Watch":                                   accessAnyone,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      accessAnyone,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": accessAnyone,
	flotillav1.AgentService_Register_FullMethodName:                  accessAnyone,
	flotillav1.AgentService_Connect_FullMethodName:                   accessAgentCert,
	flotillav1.AgentService_RenewCertificate_FullMethodName:          accessAgentCert,
	flotillav1.FleetService_ListAgents_FullMethodName:                accessViewer,
	flotillav1.FleetService_GetAgent_FullMethodName:                  accessViewer,
	flotillav1.FleetService_CreateJoinToken_FullMethodName:           accessAdmin,
	flotillav1.FleetService_RunCommand_FullMethodName:                accessOperator,
	flotillav1.FleetService_GetCommand_FullMethodName:                accessViewer,
	flotillav1.FleetService_ListCommands_FullMethodName:              accessViewer,
	flotillav1.FleetService_WatchCommand_FullMethodName:              accessViewer,
	flotillav1.FleetService_CancelCommand_FullMethodName:             accessOperator,
	flotillav1.BackupService_CreateBackupPolicy_FullMethodName:       accessOperator,
	flotillav1.BackupService_UpdateBackupPolicy_FullMethodName:       accessOperator,
	flotillav1.BackupService_DeleteBackupPolicy_FullMethodName:       accessOperator,
	flotillav1.BackupService_GetBackupPolicy_FullMethodName:          accessViewer,
	flotillav1.BackupService_ListBackupPolicies_FullMethodName:       accessViewer,
	flotillav1.BackupService_ListBackups_FullMethodName:              accessViewer,
	flotillav1.BackupService_GetBackup_FullMethodName:                accessViewer,
	flotillav1.BackupService_GetRetentionPreview_FullMethodName:      accessViewer,
	flotillav1.RolloutService_PutService_FullMethodName:              accessOperator,
	flotillav1.RolloutService_GetService_FullMethodName:              accessViewer,
	flotillav1.RolloutService_ListServices_FullMethodName:            accessViewer,
	flotillav1.RolloutService_StartRollout_FullMethodName:            accessOperator,
	flotillav1.RolloutService_GetRollout_FullMethodName:              accessViewer,
	flotillav1.RolloutService_ListRollouts_FullMethodName:            accessViewer,
	flotillav1.RolloutService_ListRemediations_FullMethodName:        accessViewer,
	flotillav1.RolloutService_WatchRollout_FullMethodName:            accessViewer,
	flotillav1.RolloutService_PauseRollout_FullMethodName:            accessOperator,
	flotillav1.RolloutService_ResumeRollout_FullMethodName:           accessOperator,
	flotillav1.RolloutService_AbortRollout_FullMethodName:            accessOperator,
	flotillav1.RolloutService_RollbackService_FullMethodName:         accessOperator,
	flotillav1.AdminService_CreateAPIToken_FullMethodName:            accessAdmin,
	flotillav1.AdminService_ListAPITokens_FullMethodName:             accessAdmin,
	flotillav1.AdminService_RevokeAPIToken_FullMethodName:            accessAdmin,
	flotillav1.AdminService_IssueOperatorCertificate_FullMethodName:  accessAdmin,
	flotillav1.AdminService_ListJoinTokens_FullMethodName:            accessAdmin,
	flotillav1.AdminService_RevokeJoinToken_FullMethodName:           accessAdmin,
	flotillav1.AdminService_DeregisterAgent_FullMethodName:           accessAdmin,
	flotillav1.AdminService_ListAuditEvents_FullMethodName:           accessOperator,

	flotillav1.NotificationService_CreateSubscription_FullMethodName:   accessAdmin,
	flotillav1.NotificationService_GetSubscription_FullMethodName:      accessAdmin,
	flotillav1.NotificationService_ListSubscriptions_FullMethodName:    accessAdmin,
	flotillav1.NotificationService_UpdateSubscription_FullMethodName:   accessAdmin,
	flotillav1.NotificationService_DeleteSubscription_FullMethodName:   accessAdmin,
	flotillav1.NotificationService_TestSubscription_FullMethodName:     accessAdmin,
	flotillav1.NotificationService_ListDeliveryAttempts_FullMethodName: accessAdmin,
}

// credential is one way of calling.
type credential struct {
	name  string
	token string           // bearer token, if any
	cert  *tls.Certificate // client certificate, if any
	// grants says what the credential reaches.
	anyone, agent bool
	role          minAccess // accessViewer..accessAdmin; 0: no operator role
}

// outcome is what a call is expected to answer.
type outcome int

const (
	notAuthError outcome = iota // the handler ran (any code but the two below)
	unauthenticated
	permissionDenied
)

func (o outcome) String() string {
	return [...]string{"not an auth error", "Unauthenticated", "PermissionDenied"}[o]
}

func (c credential) expect(need minAccess) outcome {
	switch need {
	case accessAnyone:
		return notAuthError
	case accessAgentCert:
		if c.agent {
			return notAuthError
		}
		return unauthenticated
	default:
		switch {
		case c.role == 0:
			return unauthenticated
		case c.role < need:
			return permissionDenied
		default:
			return notAuthError
		}
	}
}

// TestEveryRPCAuthorization calls every RPC of every service the server
// registers with every kind of credential, and checks that each is refused
// or admitted as expectedAccess says.
func TestEveryRPCAuthorization(t *testing.T) {
	h := start(t, servertest.WithConfig(func(c *config.Config) {
		c.RegistrationRateLimit = config.RateLimit{PerMinute: 1000, Burst: 1000}
	}))
	agent, _, err := h.register(h.joinToken(&flotillav1.CreateJoinTokenRequest{}), "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := h.adminClient().CreateAPIToken(h.operatorCtx(h.admin), &flotillav1.CreateAPITokenRequest{Name: "revoked", Role: flotillav1.Role_ROLE_ADMIN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.adminClient().RevokeAPIToken(h.operatorCtx(h.admin), &flotillav1.RevokeAPITokenRequest{TokenId: revoked.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	opCert := h.operatorCert("olivia", flotillav1.Role_ROLE_OPERATOR)
	creds := []credential{
		{name: "no credential"},
		{name: "viewer token", token: h.apiToken("viewer"), role: accessViewer},
		{name: "operator token", token: h.apiToken("operator"), role: accessOperator},
		{name: "admin token", token: h.admin, role: accessAdmin},
		{name: "agent certificate", cert: &agent.cert, agent: true},
		{name: "revoked token", token: revoked.GetSecret()},
		{name: "operator certificate", cert: &opCert, role: accessOperator},
		// Conflicting credentials are refused everywhere, whichever would
		// have been allowed alone.
		{name: "admin token and an operator certificate", token: h.admin, cert: &opCert},
		{name: "admin token and an agent certificate", token: h.admin, cert: &agent.cert},
	}

	services := h.srv.ServiceInfo()
	var methods []string
	streams := map[string]grpc.StreamDesc{}
	for svc, info := range services {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			methods = append(methods, full)
			if m.IsClientStream || m.IsServerStream {
				streams[full] = grpc.StreamDesc{StreamName: m.Name, ClientStreams: m.IsClientStream, ServerStreams: m.IsServerStream}
			}
		}
	}
	sort.Strings(methods)
	for _, m := range methods {
		if _, ok := expectedAccess[m]; !ok {
			t.Errorf("%s has no entry in expectedAccess: decide who may call it (and add it to the auth policies)", m)
		}
	}
	for m := range expectedAccess {
		if !contains(methods, m) {
			t.Errorf("expectedAccess lists %s, which the server does not offer", m)
		}
	}

	for _, c := range creds {
		conn := h.dial(h.serverTLS())
		if c.cert != nil {
			conn = h.dial(h.withCert(*c.cert))
		}
		t.Run(c.name, func(t *testing.T) {
			for _, m := range methods {
				need, ok := expectedAccess[m]
				if !ok {
					continue
				}
				want := c.expect(need)
				err := call(t, conn, c.token, m, streams)
				got := notAuthError
				switch status.Code(err) {
				case codes.Unauthenticated:
					got = unauthenticated
				case codes.PermissionDenied:
					got = permissionDenied
				case codes.Unimplemented:
					t.Errorf("%s: Unimplemented (%v): the method is routed but has no handler", m, err)
				}
				if got != want {
					t.Errorf("%s: %v (%v), want %v", m, got, err, want)
				}
			}
		})
	}
}

// call invokes method with an empty request and returns the call's error.
// Empty requests never pass validation of a mutating method, except
// CreateJoinToken's defaults, so the calls change next to nothing.
func call(t *testing.T, conn *grpc.ClientConn, token, method string, streams map[string]grpc.StreamDesc) error {
	t.Helper()
	svc, name := splitMethod(method)
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		t.Fatalf("%s: no descriptor: %v", method, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	newMsg := func(desc protoreflect.MessageDescriptor) proto.Message {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(desc.FullName())
		if err != nil {
			t.Fatalf("%s: no type for %s: %v", method, desc.FullName(), err)
		}
		return mt.New().Interface()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if sd, ok := streams[method]; ok {
		stream, err := conn.NewStream(ctx, &sd, method)
		if err != nil {
			return err
		}
		if err := stream.SendMsg(newMsg(md.Input())); err != nil {
			// Refused before the message went out; RecvMsg says why.
			return stream.RecvMsg(newMsg(md.Output()))
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		err = stream.RecvMsg(newMsg(md.Output()))
		if err == nil && method == "/grpc.health.v1.Health/Watch" {
			return nil // a watch answers with the status and stays open
		}
		return err
	}
	return conn.Invoke(ctx, method, newMsg(md.Input()), newMsg(md.Output()))
}

func splitMethod(m string) (svc, name string) {
	for i := len(m) - 1; i >= 0; i-- {
		if m[i] == '/' {
			return m[1:i], m[i+1:]
		}
	}
	return "", m
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
